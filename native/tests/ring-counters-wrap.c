/* Sequence counters run free: starting just below 2^32 and just below 2^64, writes, lapping,
 * drop counts, poll and time look-up behave exactly as from 0 (ck's UINT_MAX lesson). */
#include "helpers.h"

static void run_from(const char *path, uint64_t start)
{
	const uint64_t cap = 8;
	struct shadowd_ring *w, *r, *late;
	unlink(path); /* a fresh segment: a compatible one would be re-attached at its head */
	CHECK_EQ(shadowd_ring_create(path, 16, cap, start, 0, &w), 0);
	CHECK_EQ(shadowd_ring_open(path, 16, 0, NULL, &r), 0);
	unsigned char buf[16], out[16];
	/* 5 frames below the wrap, then across it */
	for (uint64_t i = 0; i < 5; i++) {
		t_fill(buf, 16, i);
		CHECK_EQ(shadowd_ring_write(w, buf, 16, (int64_t)(100 + i)), 0);
	}
	for (uint64_t i = 0; i < 5; i++) {
		uint64_t d;
		CHECK_EQ(shadowd_ring_read(r, out, 16, NULL, NULL, &d), 1);
		CHECK_EQ(d, 0);
		CHECK_EQ(t_verify(out, 16), i);
	}
	/* lap the reader across the wrap: 21 more frames, the ring keeps 8 */
	for (uint64_t i = 5; i < 26; i++) {
		t_fill(buf, 16, i);
		CHECK_EQ(shadowd_ring_write(w, buf, 16, (int64_t)(100 + i)), 0);
	}
	struct shadowd_ring_info info;
	CHECK_EQ(shadowd_ring_info(w, &info), 0);
	CHECK(info.head == start + 26);
	CHECK_EQ(shadowd_ring_poll(r), 1);
	uint64_t total_d = 0, next = 5;
	for (;;) {
		uint64_t d;
		int rc = shadowd_ring_read(r, out, 16, NULL, NULL, &d);
		CHECK(rc >= 0);
		total_d += d;
		next += d;
		if (!rc)
			break;
		CHECK_EQ(t_verify(out, 16), next);
		next++;
	}
	CHECK_EQ(total_d, 21 - cap);
	CHECK_EQ(next, 26);
	/* time look-up over the window that straddles the wrap */
	unsigned char found[8 * 16];
	int64_t ts[8];
	uint64_t matched;
	CHECK_EQ(shadowd_ring_find(r, 119, 122, found, 16, 8, ts, NULL, &matched), 4);
	CHECK_EQ(matched, 4);
	CHECK_EQ(ts[0], 119);
	CHECK_EQ(t_verify(found + 3 * 16, 16), 22);
	/* a reader opened from the oldest frame starts at head - capacity across the wrap */
	CHECK_EQ(shadowd_ring_open(path, 16, SHADOWD_RING_FROM_OLDEST, NULL, &late), 0);
	CHECK_EQ(shadowd_ring_read(late, out, 16, NULL, NULL, NULL), 1);
	CHECK_EQ(t_verify(out, 16), 26 - cap);
	shadowd_ring_close(late);
	shadowd_ring_close(r);
	shadowd_ring_close(w);
}

int main(void)
{
	const char *path = t_segment_path("wrap");
	run_from(path, (1ULL << 32) - 5);        /* past UINT32_MAX */
	run_from(path, UINT64_MAX - 4);          /* past UINT64_MAX: stamps and head wrap */
	run_from(path, (UINT64_MAX >> 1) - 3);   /* past 2^63: the stamp's top bit drops out */
	return T_PASS;
}
