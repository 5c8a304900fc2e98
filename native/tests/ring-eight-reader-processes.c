/* Eight reader processes on one segment, each with its own cursor, while the parent writes:
 * each child sees an in-order subsequence whose gaps add up exactly to the drops it was told
 * about, and every child ends at the last frame. Readers start at different moments and
 * read at different speeds, so some are lapped and some never are. */
#include "helpers.h"

#include <sched.h>
#include <sys/wait.h>

#define READERS 8
#define FRAMES 300000ULL
#define PAYLOAD 48

static int child(const char *path, int id)
{
	struct shadowd_ring *r;
	struct shadowd_ring_info info;
	if (shadowd_ring_open(path, PAYLOAD, SHADOWD_RING_FROM_OLDEST, &info, &r) != 0)
		return 3;
	unsigned char out[32 * PAYLOAD];
	uint32_t max_n = 1 + (uint32_t)id * 4;
	uint64_t next = info.oldest, got = 0, dropped = 0;
	while (next < FRAMES) {
		uint64_t d;
		int n = shadowd_ring_read_batch(r, out, PAYLOAD, max_n, NULL, NULL, &d);
		if (n < 0)
			return 4;
		uint64_t gaps = 0;
		for (int i = 0; i < n; i++) {
			uint64_t seq = t_verify(out + i * PAYLOAD, PAYLOAD);
			if (seq == UINT64_MAX || seq < next)
				return 5;
			gaps += seq - next;
			next = seq + 1;
		}
		if (gaps > d)
			return 6;
		next += d - gaps;
		got += (uint64_t)n;
		dropped += d;
		if (n == 0 && shadowd_ring_wait(r, 5000000000LL) != 1 && next < FRAMES)
			return 7; /* the writer stopped early */
		if (id % 2 && n)
			sched_yield(); /* slow readers get lapped */
	}
	shadowd_ring_close(r);
	return got + dropped == FRAMES - info.oldest && next == FRAMES ? 0 : 8;
}

int main(void)
{
	const char *path = t_segment_path("eightproc");
	struct shadowd_ring *w;
	CHECK_EQ(shadowd_ring_create(path, PAYLOAD, 256, 0, 0, &w), 0);
	pid_t kids[READERS];
	unsigned char buf[PAYLOAD];
	uint64_t seq = 0;
	for (int k = 0; k < READERS; k++) {
		kids[k] = fork();
		CHECK(kids[k] >= 0);
		if (kids[k] == 0) {
			shadowd_ring_close(w); /* the child is a reader only */
			_exit(child(path, k));
		}
		for (int i = 0; i < 1000; i++, seq++) { /* readers join at different points */
			t_fill(buf, PAYLOAD, seq);
			CHECK_EQ(shadowd_ring_write(w, buf, PAYLOAD, (int64_t)seq), 0);
		}
	}
	for (; seq < FRAMES; seq++) {
		t_fill(buf, PAYLOAD, seq);
		CHECK_EQ(shadowd_ring_write(w, buf, PAYLOAD, (int64_t)seq), 0);
		if ((seq & 1023) == 0)
			usleep(100);
	}
	int failed = 0;
	for (int k = 0; k < READERS; k++) {
		int status;
		CHECK_EQ(waitpid(kids[k], &status, 0), kids[k]);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "reader process %d: status 0x%x\n", k, status);
			failed = 1;
		}
	}
	shadowd_ring_close(w);
	return failed ? T_FAIL : T_PASS;
}
