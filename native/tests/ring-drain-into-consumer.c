/* shadowd_ring_drain: two rings in one call, frames straight into the consumer's memory with
 * their own times (the int64 in the frame, not the slot's stamp); late frames and frames not
 * after the floor or the frame kept before them left out and counted; last_ns is the last frame
 * that was not late; a read that fills its room says full and the next call goes on; lapping is
 * counted; the documented argument errors. */
#include "helpers.h"

struct frame {
	int64_t t_ns;
	double x;
};

static void put(struct shadowd_ring *w, int64_t t, double x)
{
	struct frame f = {t, x};
	CHECK_EQ(shadowd_ring_write(w, &f, sizeof f, 12345 /* the slot stamp: not the frame's time */), 0);
}

int main(void)
{
	char path_a[512], path_b[520];
	snprintf(path_a, sizeof path_a, "%s", t_segment_path("drain-a"));
	snprintf(path_b, sizeof path_b, "%.500s.b", path_a);
	struct shadowd_ring *wa, *wb, *ra, *rb;
	CHECK_EQ(shadowd_ring_create(path_a, sizeof(struct frame), 8, 0, 0, &wa), 0);
	CHECK_EQ(shadowd_ring_create(path_b, sizeof(struct frame), 64, 0, 0, &wb), 0);
	CHECK_EQ(shadowd_ring_open(path_a, sizeof(struct frame), 0, NULL, &ra), 0);
	CHECK_EQ(shadowd_ring_open(path_b, sizeof(struct frame), 0, NULL, &rb), 0);

	/* ring a: 100 (late), 250, 240 (out of order: not after 250), 300, 150 (late), 300 (not
	 * after 300), 310; floor 200: a frame at or before it is out of order */
	const int64_t ta[] = {100, 250, 240, 300, 150, 300, 310, 205};
	for (int i = 0; i < 7; i++)
		put(wa, ta[i], i);
	/* ring b: five frames, room for three */
	for (int i = 0; i < 5; i++)
		put(wb, 1000 + i, 10 + i);

	struct frame fa[16], fb[3];
	int64_t tsa[16], tsb[3];
	struct shadowd_ring_drain d[2];
	memset(d, 0, sizeof d);
	d[0] = (struct shadowd_ring_drain){.ring = ra, .frames = fa, .t_ns = tsa, .stride = sizeof(struct frame),
					   .room = 16, .t_ns_offset = 0, .late_ns = 200, .floor_ns = 200, .last_ns = -1};
	d[1] = (struct shadowd_ring_drain){.ring = rb, .frames = fb, .t_ns = tsb, .stride = sizeof(struct frame),
					   .room = 3, .t_ns_offset = 0, .late_ns = 0, .floor_ns = INT64_MIN, .last_ns = -1};
	int64_t sum[2 * SHADOWD_RING_DRAIN_SUMMARY];
	CHECK_EQ(shadowd_ring_drain(d, 2, sum), 0);
	/* the summary: read, n, late, out_of_order, full, dropped, last_ns, error per ring */
	const int64_t want_a[SHADOWD_RING_DRAIN_SUMMARY] = {7, 3, 2, 2, 0, 0, 310, 0};
	const int64_t want_b[SHADOWD_RING_DRAIN_SUMMARY] = {3, 3, 0, 0, 1, 0, 1002, 0};
	for (int k = 0; k < SHADOWD_RING_DRAIN_SUMMARY; k++) {
		CHECK_EQ(sum[k], want_a[k]);
		CHECK_EQ(sum[SHADOWD_RING_DRAIN_SUMMARY + k], want_b[k]);
	}
	CHECK_EQ(d[0].read, 7);
	CHECK_EQ(d[0].late, 2);
	CHECK_EQ(d[0].out_of_order, 2);
	CHECK_EQ(d[0].n, 3);
	CHECK_EQ(d[0].full, 0);
	CHECK_EQ(d[0].error, 0);
	CHECK_EQ(d[0].last_ns, 310);
	CHECK(tsa[0] == 250 && tsa[1] == 300 && tsa[2] == 310);
	CHECK(fa[0].t_ns == 250 && fa[0].x == 1.0 && fa[1].x == 3.0 && fa[2].x == 6.0);
	CHECK_EQ(d[1].n, 3);
	CHECK_EQ(d[1].full, 1);
	CHECK(tsb[0] == 1000 && tsb[2] == 1002 && fb[2].x == 12.0);

	/* the next call: the rest of b; a empty (last_ns kept) */
	CHECK_EQ(shadowd_ring_drain(d, 2, NULL), 0);
	CHECK_EQ(d[0].read, 0);
	CHECK_EQ(d[0].n, 0);
	CHECK_EQ(d[0].last_ns, 310);
	CHECK_EQ(d[1].n, 2);
	CHECK_EQ(d[1].full, 0);
	CHECK(tsb[0] == 1003 && fb[1].x == 14.0);

	/* every frame late: nothing kept, last_ns unchanged */
	put(wa, 150, 0);
	CHECK_EQ(shadowd_ring_drain(d, 1, NULL), 0);
	CHECK_EQ(d[0].read, 1);
	CHECK_EQ(d[0].late, 1);
	CHECK_EQ(d[0].n, 0);
	CHECK_EQ(d[0].last_ns, 310);

	/* lapping: 20 frames into a ring of 8 */
	for (int i = 0; i < 20; i++)
		put(wa, 400 + i, i);
	CHECK_EQ(shadowd_ring_drain(d, 1, NULL), 0);
	CHECK(d[0].dropped >= 12);
	CHECK_EQ(d[0].read + d[0].dropped, 20);
	CHECK_EQ(tsa[d[0].n - 1], 419);

	/* append: each call goes on after the frames the last one kept; the floor follows them */
	struct frame fc[4];
	int64_t tsc[4];
	struct shadowd_ring_drain c = {.ring = ra, .frames = fc, .t_ns = tsc, .stride = sizeof(struct frame),
				       .room = 4, .append = 1, .late_ns = 0, .floor_ns = 0};
	put(wa, 500, 1);
	put(wa, 510, 2);
	CHECK_EQ(shadowd_ring_drain(&c, 1, NULL), 0);
	CHECK_EQ(c.n, 2);
	CHECK_EQ(c.room, 2);
	CHECK_EQ(c.floor_ns, 510);
	CHECK(c.frames == (void *)&fc[2] && c.t_ns == &tsc[2]);
	put(wa, 505, 3); /* not after the floor */
	put(wa, 520, 4);
	put(wa, 530, 5);
	CHECK_EQ(shadowd_ring_drain(&c, 1, NULL), 0);
	CHECK_EQ(c.read, 2); /* room for two */
	CHECK_EQ(c.out_of_order, 1);
	CHECK_EQ(c.n, 1);
	CHECK(tsc[2] == 520 && fc[2].x == 4.0 && tsc[0] == 500 && tsc[1] == 510);
	CHECK_EQ(c.room, 1);
	CHECK_EQ(shadowd_ring_drain(&c, 1, NULL), 0);
	CHECK(c.n == 1 && tsc[3] == 530 && c.room == 0);
	put(wa, 540, 6);
	CHECK_EQ(shadowd_ring_drain(&c, 1, NULL), 0); /* no room left: nothing read, full */
	CHECK(c.read == 0 && c.full == 1);

	/* argument errors */
	CHECK_EQ(shadowd_ring_drain(NULL, 1, NULL), -EINVAL);
	CHECK_EQ(shadowd_ring_drain(NULL, 0, NULL), 0);
	struct shadowd_ring_drain bad = d[0];
	bad.frames = NULL;
	CHECK_EQ(shadowd_ring_drain(&bad, 1, NULL), -EINVAL);
	bad = d[0];
	bad.t_ns_offset = 12; /* past the 16-byte stride for an int64 */
	CHECK_EQ(shadowd_ring_drain(&bad, 1, NULL), -EINVAL);
	bad = d[0];
	bad.stride = 8; /* < payload_max: the read fails, the ring's error says so */
	CHECK_EQ(shadowd_ring_drain(&bad, 1, NULL), 0);
	CHECK_EQ(bad.error, -EINVAL);
	CHECK_EQ(bad.n, 0);

	shadowd_ring_close(ra);
	shadowd_ring_close(rb);
	shadowd_ring_close(wa);
	shadowd_ring_close(wb);
	unlink(path_b);
	return T_PASS;
}
