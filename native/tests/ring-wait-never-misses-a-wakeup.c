/* Ping-pong across the sleep/wake race: the writer publishes one frame just as the reader is
 * going to sleep, thousands of times. Every wait() must return the frame long before its
 * 2 s timeout: a lost wake-up (the Dekker pair of publish()/wait() broken) shows up as a
 * wait that lasts the whole timeout. The race window of a missing barrier is a few
 * nanoseconds wide, so this catches gross breakage (no wake at all, a wrong futex word)
 * reliably and a missing barrier only by luck; the argument for the barriers is in ring.c. */
#include "helpers.h"

#include <pthread.h>
#include <stdatomic.h>

#define ROUNDS 20000

static struct shadowd_ring *w;
static _Atomic uint64_t acked;

static void *writer_main(void *arg)
{
	(void)arg;
	unsigned char buf[16] = {0};
	uint32_t x = 12345;
	for (uint64_t i = 0; i < ROUNDS; i++) {
		while (atomic_load(&acked) != i)
			; /* the reader consumed frame i-1 and is heading back into wait() */
		x = x * 1103515245u + 12345u;
		for (volatile uint32_t spin = 0; spin < (x >> 16) % 2000; spin++)
			; /* land anywhere in the reader's spin / announce / sleep sequence */
		memcpy(buf, &i, 8);
		if (shadowd_ring_write(w, buf, 16, (int64_t)i) != 0)
			return (void *)1;
	}
	return NULL;
}

int main(void)
{
	const char *path = t_segment_path("nomiss");
	struct shadowd_ring *r;
	CHECK_EQ(shadowd_ring_create(path, 16, 64, 0, 0, &w), 0);
	CHECK_EQ(shadowd_ring_open(path, 16, 0, NULL, &r), 0);
	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, writer_main, NULL), 0);
	unsigned char out[16];
	int64_t slowest = 0;
	for (uint64_t i = 0; i < ROUNDS; i++) {
		int64_t t0 = t_now_ns();
		int rc = shadowd_ring_wait(r, 2000000000LL);
		int64_t took = t_now_ns() - t0;
		if (took > slowest)
			slowest = took;
		/* at its timeout wait() re-checks and finds the frame, so a lost wake-up shows as
		 * a wait that lasted the whole timeout */
		if (rc != 1 || took > 1000000000LL) {
			fprintf(stderr, "round %llu: wait returned %d after %lld ns: a wake-up was lost\n",
				(unsigned long long)i, rc, (long long)took);
			return T_FAIL;
		}
		CHECK_EQ(shadowd_ring_read(r, out, 16, NULL, NULL, NULL), 1);
		uint64_t seq;
		memcpy(&seq, out, 8);
		CHECK_EQ(seq, i);
		atomic_store(&acked, i + 1);
	}
	void *ret;
	CHECK_EQ(pthread_join(th, &ret), 0);
	CHECK(ret == NULL);
	fprintf(stderr, "%d rounds, slowest wait %.1f us\n", ROUNDS, (double)slowest / 1e3);
	shadowd_ring_close(r);
	shadowd_ring_close(w);
	return T_PASS;
}
