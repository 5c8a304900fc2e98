/* Stress (run under TSan by `make check-tsan`): one writer thread streams millions of frames
 * while several reader threads read with batches, single reads, poll and futex waits. Every
 * reader's view must be an in-order subsequence of what was written, each frame intact
 * (payload words agree with its sequence and t_ns), and the drops it was told about must
 * account exactly for every frame it did not see.
 * Usage: ring-stress-one-writer-many-readers [frames] [readers]; defaults 3000000, 8. */
#include "helpers.h"

#include <pthread.h>
#include <sched.h>

#define PAYLOAD 64

static const char *path;
static uint64_t total_frames;

struct reader_result {
	int id;
	uint64_t frames, dropped, torn, wakes;
	int failed;
};

static void *writer_main(void *arg)
{
	struct shadowd_ring *w = arg;
	unsigned char batch[16 * PAYLOAD];
	uint64_t seq = 0;
	while (seq < total_frames) {
		if (seq % 3 == 0 && total_frames - seq >= 16) { /* a batch of 16 */
			for (int i = 0; i < 16; i++) {
				t_fill(batch + i * PAYLOAD, PAYLOAD, seq + (uint64_t)i);
			}
			/* t_ns is the first word: seq ^ 0 == seq */
			if (shadowd_ring_write_batch(w, batch, PAYLOAD, 16, 0) != 16)
				return (void *)1;
			seq += 16;
		} else {
			unsigned char buf[PAYLOAD];
			t_fill(buf, PAYLOAD, seq);
			if (shadowd_ring_write(w, buf, PAYLOAD, (int64_t)seq) != 0)
				return (void *)1;
			seq++;
		}
		if ((seq & 0x3FFF) == 0)
			sched_yield(); /* let sleepers and slow readers interleave */
	}
	return NULL;
}

static void *reader_main(void *arg)
{
	struct reader_result *res = arg;
	struct shadowd_ring *r;
	if (shadowd_ring_open(path, PAYLOAD, SHADOWD_RING_FROM_OLDEST, NULL, &r) != 0) {
		res->failed = 1;
		return NULL;
	}
	unsigned char out[64 * PAYLOAD];
	int64_t ts[64];
	uint64_t next = 0; /* every reader opened before the writer started */
	uint32_t max_n = (uint32_t)(1 + res->id * 9 % 64);
	for (;;) {
		uint64_t d = 0;
		int n;
		if (res->id % 4 == 3) {
			uint32_t len;
			n = shadowd_ring_read(r, out, PAYLOAD, &len, ts, &d);
			if (n == 1 && len != PAYLOAD)
				res->failed = 1;
		} else {
			n = shadowd_ring_read_batch(r, out, PAYLOAD, max_n, ts, NULL, &d);
		}
		if (n < 0) {
			fprintf(stderr, "reader %d: read returned %d\n", res->id, n);
			res->failed = 1;
			break;
		}
		res->dropped += d;
		/* drops may fall anywhere in the batch: the gaps must add up to exactly d */
		uint64_t gaps = 0;
		for (int i = 0; i < n; i++) {
			uint64_t seq = t_verify(out + i * PAYLOAD, PAYLOAD);
			if (seq == UINT64_MAX || seq < next || ts[i] != (int64_t)seq) {
				fprintf(stderr, "reader %d: got frame %llu (t %lld), expected >= %llu\n", res->id,
					(unsigned long long)seq, (long long)ts[i], (unsigned long long)next);
				res->failed = 1;
				goto out;
			}
			gaps += seq - next;
			next = seq + 1;
		}
		next += d - gaps; /* drops after the last frame of the batch (or of an empty one) */
		if (gaps > d) {
			fprintf(stderr, "reader %d: %llu frames skipped, %llu reported dropped\n", res->id,
				(unsigned long long)gaps, (unsigned long long)d);
			res->failed = 1;
			goto out;
		}
		res->frames += (uint64_t)n;
		if (next == total_frames)
			break;
		if (n == 0) {
			if (res->id % 2 == 0) {
				int rc = shadowd_ring_wait(r, 1000000); /* 1 ms */
				res->wakes += rc == 1;
				if (rc < 0) {
					res->failed = 1;
					break;
				}
			} else if (!shadowd_ring_poll(r)) {
				sched_yield();
			}
		} else if (res->id % 3 == 1) {
			sched_yield(); /* a slow reader: gets lapped */
		}
	}
out:;
	struct shadowd_ring_stats st;
	shadowd_ring_stats(r, &st);
	res->torn = st.torn;
	if (st.dropped != res->dropped || st.frames != res->frames)
		res->failed = 1;
	shadowd_ring_close(r);
	return NULL;
}

int main(int argc, char **argv)
{
	total_frames = argc > 1 ? strtoull(argv[1], NULL, 10) : 3000000;
	int readers = argc > 2 ? atoi(argv[2]) : 8;
	if (readers < 1 || readers > 64)
		return T_FAIL;
	path = t_segment_path("stress");
	struct shadowd_ring *w;
	CHECK_EQ(shadowd_ring_create(path, PAYLOAD, 1024, 0, 0, &w), 0);
	pthread_t rt[64], wt;
	struct reader_result res[64];
	memset(res, 0, sizeof(res));
	for (int i = 0; i < readers; i++) {
		res[i].id = i;
		CHECK_EQ(pthread_create(&rt[i], NULL, reader_main, &res[i]), 0);
	}
	usleep(20000); /* readers open before the first frame */
	int64_t t0 = t_now_ns();
	CHECK_EQ(pthread_create(&wt, NULL, writer_main, w), 0);
	void *wret;
	CHECK_EQ(pthread_join(wt, &wret), 0);
	CHECK(wret == NULL);
	int failed = 0;
	for (int i = 0; i < readers; i++) {
		CHECK_EQ(pthread_join(rt[i], NULL), 0);
		fprintf(stderr, "reader %d: %llu frames, %llu dropped, %llu torn, %llu wakes%s\n", i,
			(unsigned long long)res[i].frames, (unsigned long long)res[i].dropped,
			(unsigned long long)res[i].torn, (unsigned long long)res[i].wakes,
			res[i].failed ? " FAILED" : "");
		failed |= res[i].failed;
		failed |= res[i].frames + res[i].dropped != total_frames;
	}
	fprintf(stderr, "%llu frames, %d readers, %.2f s\n", (unsigned long long)total_frames, readers,
		(double)(t_now_ns() - t0) / 1e9);
	shadowd_ring_close(w);
	return failed ? T_FAIL : T_PASS;
}
