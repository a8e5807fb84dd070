/* progress.c: the progress line of long offline commands (progress.h). */
#include "cli/progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

static double mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void human(char *out, size_t cap, double b)
{
	static const char *const u[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	int i = 0;

	while (b >= 1024 && i < 5) {
		b /= 1024;
		i++;
	}
	snprintf(out, cap, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

void progress_begin(struct progress *p, const char *what, const char *unit)
{
	p->what = what;
	p->unit = unit;
	p->on = isatty(STDERR_FILENO);
	p->start = p->last = mono();
	p->items = p->bytes = p->extra = 0;
	p->extra_unit = NULL;
	p->frac = -1;
}

static void draw(struct progress *p, double now, int final)
{
	double secs = now - p->start;
	char bytes[32], rate[32], eta[32] = "", extra[48] = "";

	human(bytes, sizeof(bytes), (double)p->bytes);
	human(rate, sizeof(rate), secs > 0 ? (double)p->bytes / secs : 0);
	if (!final && p->frac > 0.001 && p->frac < 1) {
		long left = (long)(secs / p->frac * (1 - p->frac) + 0.5);

		snprintf(eta, sizeof(eta), ", ETA %ld:%02ld", left / 60, left % 60);
	}
	if (p->extra_unit)
		snprintf(extra, sizeof(extra), " (%llu %s)", (unsigned long long)p->extra,
			 p->extra_unit);
	/* \033[K clears what a longer previous line left to the right. */
	fprintf(stderr, "\r%s: %llu %s%s, %s, %.0f %s/s, %s/s%s%s\033[K%s", p->what,
		(unsigned long long)p->items, p->unit, extra, bytes,
		secs > 0 ? (double)p->items / secs : 0.0, p->unit, rate, eta,
		final ? ", done" : "", final ? "\n" : "");
	fflush(stderr);
}

void progress_update(struct progress *p, uint64_t items, uint64_t bytes, double frac)
{
	double now;

	p->items = items;
	p->bytes = bytes;
	p->frac = frac;
	if (!p->on)
		return;
	now = mono();
	if (now - p->last < 0.2)
		return;
	p->last = now;
	draw(p, now, 0);
}

void progress_end(struct progress *p)
{
	if (p->on)
		draw(p, mono(), 1);
}
