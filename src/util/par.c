/* par.c: see par.h. */
#include "util/par.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#define PAR_MAX_THREADS 64

struct par {
	size_t n;
	par_fn fn;
	void *arg;
	atomic_size_t next;
	atomic_int stop;
	pthread_mutex_t lock;	/* guards rc and at */
	int rc;
	size_t at;
};

static void *par_worker(void *arg)
{
	struct par *p = arg;

	while (!atomic_load(&p->stop)) {
		size_t i = atomic_fetch_add(&p->next, 1);
		int rc;

		if (i >= p->n)
			break;
		rc = p->fn(i, p->arg);
		if (rc < 0) {
			pthread_mutex_lock(&p->lock);
			if (p->rc == 0 || i < p->at) {
				p->rc = rc;
				p->at = i;
			}
			pthread_mutex_unlock(&p->lock);
			atomic_store(&p->stop, 1);
		}
	}
	return NULL;
}

int par_each(size_t n, unsigned threads, par_fn fn, void *arg, size_t *failed_at)
{
	struct par p = { .n = n, .fn = fn, .arg = arg };
	pthread_t tid[PAR_MAX_THREADS];
	unsigned made = 0, want;

	if (threads > PAR_MAX_THREADS)
		threads = PAR_MAX_THREADS;
	want = threads ? threads - 1 : 0;
	if (want > n)
		want = (unsigned)n;
	atomic_init(&p.next, 0);
	atomic_init(&p.stop, 0);
	pthread_mutex_init(&p.lock, NULL);
	while (made < want && pthread_create(&tid[made], NULL, par_worker, &p) == 0)
		made++;
	par_worker(&p);
	while (made)
		pthread_join(tid[--made], NULL);
	pthread_mutex_destroy(&p.lock);
	if (p.rc < 0 && failed_at)
		*failed_at = p.at;
	return p.rc;
}
