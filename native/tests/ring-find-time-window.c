/* find() returns exactly the still-valid frames with t0 <= t_ns <= t1, oldest first, and
 * moves no cursor; max_n truncates but `matched` tells how many there were. */
#include "helpers.h"

int main(void)
{
	const char *path = t_segment_path("find");
	struct shadowd_ring *w, *r;
	CHECK_EQ(shadowd_ring_create(path, 16, 64, 0, 0, &w), 0);
	CHECK_EQ(shadowd_ring_open(path, 16, SHADOWD_RING_FROM_OLDEST, NULL, &r), 0);
	unsigned char buf[16], out[64 * 16];
	int64_t ts[64];
	uint64_t matched;
	CHECK_EQ(shadowd_ring_find(r, 0, 1000, out, 16, 64, ts, NULL, &matched), 0); /* empty */
	/* 200 frames at t = 10*i, with a run of equal timestamps: the ring keeps 136..199 */
	for (uint64_t i = 0; i < 200; i++) {
		t_fill(buf, 16, i);
		int64_t t = (int64_t)(i >= 150 && i < 155 ? 1500 : 10 * i);
		CHECK_EQ(shadowd_ring_write(w, buf, 16, t), 0);
	}
	struct {
		int64_t t0, t1;
		uint32_t max_n;
		int want_n;
		uint64_t want_matched, first_seq;
	} cases[] = {
		{1400, 1420, 64, 3, 3, 140},      /* inside */
		{0, 1365, 64, 1, 1, 136},         /* reaches back before the oldest */
		{1500, 1500, 64, 5, 5, 150},      /* a run of equal stamps */
		{1985, 5000, 64, 1, 1, 199},      /* past the newest */
		{2000, 5000, 64, 0, 0, 0},        /* nothing newer */
		{0, 100, 64, 0, 0, 0},            /* all overwritten */
		{1400, 1300, 64, 0, 0, 0},        /* t1 < t0 */
		{0, INT64_MAX, 10, 10, 64, 136},  /* truncated by max_n */
		{-5, 1379, 64, 2, 2, 136},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		int n = shadowd_ring_find(r, cases[c].t0, cases[c].t1, out, 16, cases[c].max_n, ts, NULL, &matched);
		if (n != cases[c].want_n || matched != cases[c].want_matched) {
			fprintf(stderr, "case %zu: n %d matched %llu\n", c, n, (unsigned long long)matched);
			return T_FAIL;
		}
		for (int i = 0; i < n; i++) {
			CHECK(ts[i] >= cases[c].t0 && ts[i] <= cases[c].t1);
			CHECK_EQ(t_verify(out + i * 16, 16), cases[c].first_seq + (uint64_t)i);
		}
	}
	/* no cursor moved: the reader still starts at the oldest frame */
	uint64_t d;
	CHECK_EQ(shadowd_ring_read(r, out, 16, NULL, NULL, &d), 1);
	CHECK_EQ(t_verify(out, 16), 136);
	CHECK_EQ(d, 136); /* it was opened at 0 and lapped */
	/* the writer handle can look up history too (the clip builder's pre-window) */
	CHECK_EQ(shadowd_ring_find(w, 1990, 1990, out, 16, 1, ts, NULL, NULL), 1);
	shadowd_ring_close(r);
	shadowd_ring_close(w);
	return T_PASS;
}
