/*
 * ring-bench.c: the C half of `shadowd bench ring` (shadowd/bench/ring.py builds it with
 * cc -O2 on the fly and parses the one JSON line each mode prints).
 *
 *   ring-bench pair PATH PAYLOAD MS      writer thread -> reader thread through the shadowd
 *                                        ring for MS milliseconds (write() per frame,
 *                                        read_batch of 64)
 *   ring-bench spsc PAYLOAD MS           the peer: a plain bounded SPSC ring (ck_ring style,
 *                                        one frame per enqueue/dequeue, writer waits when full)
 *   ring-bench produce PATH PAYLOAD CAPACITY MS CREDIT
 *                                        a producer process for the Python reader figures:
 *                                        writes frames (t_ns first, bursts of 16 through
 *                                        write_batch) as fast as the reader's
 *                                        count in the 16-byte CREDIT file allows, until MS
 *                                        pass or the file's stop word is set
 *   ring-bench memcpy MIB REPS           memcpy bandwidth, the physical ceiling
 * Both ring paths copy PAYLOAD bytes in and out of the ring, so they do the same work.
 *
 * Flow control: the shadowd ring never blocks its writer (it overwrites), so a free-running
 * writer laps a slower reader and the figure would measure the chase at the overwrite edge,
 * not the transport. Like the SPSC peer, the bench writers therefore wait while they are a
 * ring's worth ahead of the reader's published count (a bench-only shared counter, outside
 * the ring): every frame is delivered and both rings are compared on the same work.
 */
#define _GNU_SOURCE
#include "shadowd/ring.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CAPACITY 4096
#define BATCH 64
#define PRODUCE_BURST 16

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Every spin-wait of both rings: poll 256 times, then yield the core, so a descheduled peer
 * gets to run on a shared machine (same policy for the shadowd ring and the SPSC peer). */
static inline void backoff(unsigned *idle)
{
	if (++*idle >= 256) {
		*idle = 0;
		sched_yield();
	}
}

/* ---- shadowd ring, writer thread -> reader thread ---- */

struct pair_ctx {
	const char *path;
	uint32_t payload;
	int64_t run_ns;
	_Atomic int done;
	_Atomic int reader_ready;
	_Alignas(128) _Atomic uint64_t consumed; /* flow control, see the top of the file */
	unsigned char pad[120];
	uint64_t written, read, dropped, torn;
	int64_t t_start, t_end;
};

static void *pair_reader(void *arg)
{
	struct pair_ctx *c = arg;
	struct shadowd_ring *r;
	if (shadowd_ring_open(c->path, c->payload, 0, NULL, &r) != 0)
		return (void *)1;
	unsigned char *out = malloc((size_t)c->payload * BATCH);
	atomic_store(&c->reader_ready, 1);
	uint64_t got = 0, lost = 0;
	unsigned idle = 0;
	for (;;) {
		uint64_t d;
		int n = shadowd_ring_read_batch(r, out, c->payload, BATCH, NULL, NULL, &d);
		if (n < 0)
			break;
		got += (uint64_t)n;
		lost += d;
		atomic_store_explicit(&c->consumed, got + lost, memory_order_release);
		/* caught up: poll, as the SPSC peer's consumer does (the futex path is measured by
		 * the Python reader figures) */
		if (n == 0) {
			if (atomic_load_explicit(&c->done, memory_order_acquire) && !shadowd_ring_poll(r))
				break;
			backoff(&idle);
		} else {
			idle = 0;
		}
	}
	c->t_end = now_ns();
	struct shadowd_ring_stats st;
	shadowd_ring_stats(r, &st);
	c->read = got;
	c->dropped = lost;
	c->torn = st.torn;
	free(out);
	shadowd_ring_close(r);
	return NULL;
}

static int run_pair(const char *path, uint32_t payload, int64_t ms)
{
	struct pair_ctx c = {.path = path, .payload = payload, .run_ns = ms * 1000000};
	struct shadowd_ring *w;
	int rc = shadowd_ring_create(path, payload, CAPACITY, 0, SHADOWD_RING_REPLACE, &w);
	if (rc)
		return fprintf(stderr, "create: %d\n", rc), 1;
	pthread_t th;
	pthread_create(&th, NULL, pair_reader, &c);
	while (!atomic_load(&c.reader_ready))
		usleep(100);
	unsigned char *buf = calloc(1, payload);
	uint64_t seq = 0, consumed = 0;
	c.t_start = now_ns();
	int64_t end = c.t_start + c.run_ns;
	for (;;) {
		for (int i = 0; i < 1024; i++, seq++) {
			for (unsigned idle = 0; seq - consumed >= CAPACITY - 2 * BATCH; backoff(&idle))
				consumed = atomic_load_explicit(&c.consumed, memory_order_acquire);
			memcpy(buf, &seq, 8);
			shadowd_ring_write(w, buf, payload, (int64_t)seq);
		}
		if (now_ns() >= end)
			break;
	}
	int64_t t_w = now_ns();
	atomic_store_explicit(&c.done, 1, memory_order_release);
	pthread_join(th, NULL);
	shadowd_ring_close(w);
	unlink(path);
	free(buf);
	double secs = (double)(c.t_end - c.t_start) / 1e9;
	printf("{\"payload_bytes\": %u, \"delivered_fps\": %.0f, \"written_fps\": %.0f, \"frames_read\": %llu, "
	       "\"dropped\": %llu, \"torn\": %llu, \"seconds\": %.3f}\n",
	       payload, (double)c.read / secs, (double)seq / ((double)(t_w - c.t_start) / 1e9),
	       (unsigned long long)c.read, (unsigned long long)c.dropped, (unsigned long long)c.torn, secs);
	return 0;
}

/* ---- the peer: plain SPSC ring, no overwrite, one frame per call ---- */

struct spsc {
	_Alignas(128) _Atomic uint64_t head; /* producer */
	_Alignas(128) _Atomic uint64_t tail; /* consumer */
	_Alignas(128) uint64_t mask;
	uint32_t payload;
	unsigned char *slots;
};

struct spsc_ctx {
	struct spsc *q;
	_Atomic int done;
	uint64_t read;
	int64_t t_end;
};

static void *spsc_consumer(void *arg)
{
	struct spsc_ctx *c = arg;
	struct spsc *q = c->q;
	unsigned char *out = malloc(q->payload);
	uint64_t tail = 0, head_cache = 0, got = 0;
	unsigned idle = 0;
	for (;;) {
		if (tail == head_cache) {
			head_cache = atomic_load_explicit(&q->head, memory_order_acquire);
			if (tail == head_cache) {
				if (atomic_load_explicit(&c->done, memory_order_acquire) &&
				    tail == atomic_load_explicit(&q->head, memory_order_acquire))
					break;
				backoff(&idle);
				continue;
			}
			idle = 0;
		}
		memcpy(out, q->slots + (tail & q->mask) * q->payload, q->payload);
		tail++;
		got++;
		atomic_store_explicit(&q->tail, tail, memory_order_release);
	}
	c->t_end = now_ns();
	c->read = got;
	free(out);
	return NULL;
}

static int run_spsc(uint32_t payload, int64_t ms)
{
	struct spsc *q = aligned_alloc(128, sizeof(struct spsc));
	memset(q, 0, sizeof(*q));
	q->mask = CAPACITY - 1;
	q->payload = payload;
	q->slots = aligned_alloc(64, (size_t)CAPACITY * payload);
	memset(q->slots, 0, (size_t)CAPACITY * payload);
	struct spsc_ctx c = {.q = q};
	pthread_t th;
	pthread_create(&th, NULL, spsc_consumer, &c);
	unsigned char *buf = calloc(1, payload);
	uint64_t head = 0, tail_cache = 0;
	int64_t t0 = now_ns(), end = t0 + ms * 1000000;
	for (;;) {
		for (int i = 0; i < 1024; i++) {
			for (unsigned idle = 0; head - tail_cache >= CAPACITY; backoff(&idle))
				tail_cache = atomic_load_explicit(&q->tail, memory_order_acquire);
			memcpy(buf, &head, 8);
			memcpy(q->slots + (head & q->mask) * payload, buf, payload);
			head++;
			atomic_store_explicit(&q->head, head, memory_order_release);
		}
		if (now_ns() >= end)
			break;
	}
	atomic_store_explicit(&c.done, 1, memory_order_release);
	pthread_join(th, NULL);
	double secs = (double)(c.t_end - t0) / 1e9;
	printf("{\"payload_bytes\": %u, \"delivered_fps\": %.0f, \"frames_read\": %llu, \"seconds\": %.3f}\n", payload,
	       (double)c.read / secs, (unsigned long long)c.read, secs);
	free(buf);
	free(q->slots);
	free(q);
	return 0;
}

/* ---- producer process for the Python reader ---- */

/* credit file: u64 consumed (the reader's count of frames read + dropped), u64 stop flag */
static int run_produce(const char *path, uint32_t payload, uint64_t capacity, int64_t ms, const char *credit_path)
{
	int cfd = open(credit_path, O_RDWR);
	if (cfd < 0)
		return perror("credit file"), 1;
	_Atomic uint64_t *credit = mmap(NULL, 16, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0);
	close(cfd);
	if (credit == MAP_FAILED)
		return perror("mmap credit"), 1;
	struct shadowd_ring *w;
	int rc = shadowd_ring_create(path, payload, capacity, 0, 0, &w);
	if (rc)
		return fprintf(stderr, "create: %d\n", rc), 1;
	unsigned char *buf = calloc(PRODUCE_BURST, payload);
	uint64_t seq = 0;
	int64_t t0 = now_ns(), end = t0 + ms * 1000000;
	uint64_t consumed = 0, limit = capacity - capacity / 4;
	for (;;) {
		/* bursts of PRODUCE_BURST frames through write_batch: one publish per burst, as a
		 * bridge draining a socket would */
		for (int i = 0; i < 256; i += PRODUCE_BURST, seq += PRODUCE_BURST) {
			while (seq + PRODUCE_BURST - consumed > limit) {
				consumed = atomic_load_explicit(&credit[0], memory_order_acquire);
				if (atomic_load_explicit(&credit[1], memory_order_relaxed))
					goto out;
				if (seq + PRODUCE_BURST - consumed > limit)
					sched_yield();
			}
			for (int k = 0; k < PRODUCE_BURST; k++) {
				int64_t t = (int64_t)(seq + (uint64_t)k);
				memcpy(buf + (size_t)k * payload, &t, 8);
			}
			shadowd_ring_write_batch(w, buf, payload, PRODUCE_BURST, 0);
		}
		if (now_ns() >= end || atomic_load_explicit(&credit[1], memory_order_relaxed))
			break;
	}
out:
	double secs = (double)(now_ns() - t0) / 1e9;
	shadowd_ring_close(w);
	printf("{\"written\": %llu, \"written_fps\": %.0f}\n", (unsigned long long)seq, (double)seq / secs);
	free(buf);
	return 0;
}

static int run_memcpy(size_t mib, int reps)
{
	size_t n = mib << 20;
	unsigned char *a = malloc(n), *b = malloc(n);
	memset(a, 1, n);
	memset(b, 2, n);
	memcpy(b, a, n); /* warm */
	int64_t t0 = now_ns();
	for (int i = 0; i < reps; i++) {
		memcpy(i % 2 ? a : b, i % 2 ? b : a, n);
		__asm__ volatile("" ::: "memory");
	}
	double secs = (double)(now_ns() - t0) / 1e9;
	printf("{\"gbps\": %.2f, \"check\": %d}\n", (double)n * reps / secs / 1e9, a[n / 2] + b[n / 3]);
	free(a);
	free(b);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 5 && !strcmp(argv[1], "pair"))
		return run_pair(argv[2], (uint32_t)atoi(argv[3]), atoll(argv[4]));
	if (argc >= 4 && !strcmp(argv[1], "spsc"))
		return run_spsc((uint32_t)atoi(argv[2]), atoll(argv[3]));
	if (argc >= 7 && !strcmp(argv[1], "produce"))
		return run_produce(argv[2], (uint32_t)atoi(argv[3]), strtoull(argv[4], NULL, 10), atoll(argv[5]), argv[6]);
	if (argc >= 4 && !strcmp(argv[1], "memcpy"))
		return run_memcpy((size_t)atoll(argv[2]), atoi(argv[3]));
	fprintf(stderr, "usage: ring-bench pair PATH PAYLOAD MS | spsc PAYLOAD MS | produce PATH PAYLOAD CAPACITY MS CREDIT | memcpy MIB REPS\n");
	return 2;
}
