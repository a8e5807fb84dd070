/*
 * progress.h: one progress line on stderr for commands that can run for
 * minutes (gc, fsck), drawn only when stderr is a terminal: items, bytes,
 * rate and, when the fraction done is known, an ETA. Redrawn at most five
 * times a second; progress_end() draws the final state and a newline.
 */
#ifndef CKPT_PROGRESS_H
#define CKPT_PROGRESS_H

#include <stdint.h>

struct progress {
	const char *what;	/* "gc", "fsck" */
	const char *unit;	/* "chunks", "files" */
	int on;			/* stderr is a terminal */
	double start, last;
	uint64_t items, bytes;
	double frac;		/* -1: unknown */
	uint64_t extra;		/* a second count, shown as "(N <extra_unit>)" */
	const char *extra_unit;
};

void progress_begin(struct progress *p, const char *what, const char *unit);
void progress_update(struct progress *p, uint64_t items, uint64_t bytes, double frac);
void progress_end(struct progress *p);

#endif
