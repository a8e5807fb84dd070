/* pool.c: worker threads and a FIFO of tasks (see pool.h). */
#include "fs/pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "util/buf.h"

struct task {
	pool_fn fn;
	void *arg;
	struct task *next;
};

struct pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct task *head, *tail;
	int stopping;
	int n_threads;
	pthread_t *threads;
	/* pool_buf_*: freed buffers of buf_size bytes (under lock) */
	void **bufs;
	size_t n_bufs, max_bufs, buf_size;
};

static void *worker(void *arg)
{
	struct pool *p = arg;

	for (;;) {
		struct task *t;

		pthread_mutex_lock(&p->lock);
		while (!p->head && !p->stopping)
			pthread_cond_wait(&p->cond, &p->lock);
		t = p->head;
		if (!t) {
			pthread_mutex_unlock(&p->lock);
			return NULL;
		}
		p->head = t->next;
		if (!p->head)
			p->tail = NULL;
		pthread_mutex_unlock(&p->lock);
		t->fn(t->arg);
		free(t);
	}
}

struct pool *pool_new(int n_threads)
{
	struct pool *p = calloc(1, sizeof(*p));
	int i;

	if (!p)
		return NULL;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->threads = calloc((size_t)n_threads, sizeof(*p->threads));
	p->max_bufs = (size_t)n_threads + 2;
	p->bufs = calloc(p->max_bufs, sizeof(*p->bufs));
	if (!p->threads || !p->bufs) {
		free(p->threads);
		free(p->bufs);
		free(p);
		return NULL;
	}
	for (i = 0; i < n_threads; i++) {
		if (pthread_create(&p->threads[i], NULL, worker, p) != 0)
			break;
		p->n_threads++;
	}
	if (p->n_threads == 0) {
		pool_free(p);
		return NULL;
	}
	return p;
}

int pool_submit(struct pool *p, pool_fn fn, void *arg)
{
	struct task *t = malloc(sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->fn = fn;
	t->arg = arg;
	t->next = NULL;
	pthread_mutex_lock(&p->lock);
	if (p->tail)
		p->tail->next = t;
	else
		p->head = t;
	p->tail = t;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

void pool_free(struct pool *p)
{
	int i;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = 1;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (i = 0; i < p->n_threads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	while (p->n_bufs)
		free(p->bufs[--p->n_bufs]);
	free(p->bufs);
	free(p->threads);
	free(p);
}

void *pool_buf_get(struct pool *p, size_t size)
{
	void *b = NULL;

	if (!p)
		return buf_alloc_chunk(size);
	pthread_mutex_lock(&p->lock);
	if (!p->buf_size)
		p->buf_size = size;
	if (size == p->buf_size && p->n_bufs)
		b = p->bufs[--p->n_bufs];
	pthread_mutex_unlock(&p->lock);
	return b ? b : buf_alloc_chunk(size);
}

void pool_buf_put(struct pool *p, void *buf, size_t size)
{
	if (!buf)
		return;
	if (p) {
		pthread_mutex_lock(&p->lock);
		if (size == p->buf_size && p->n_bufs < p->max_bufs) {
			p->bufs[p->n_bufs++] = buf;
			buf = NULL;
		}
		pthread_mutex_unlock(&p->lock);
	}
	free(buf);
}
