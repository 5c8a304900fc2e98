/* Frames come out as they went in: payload, length, t_ns, in order; poll and empty reads. */
#include "helpers.h"

int main(void)
{
	const char *path = t_segment_path("roundtrip");
	struct shadowd_ring *w, *r;
	CHECK_EQ(shadowd_ring_create(path, 64, 16, 0, 0, &w), 0);
	CHECK_EQ(shadowd_ring_open(path, 64, 0, NULL, &r), 0);
	unsigned char buf[64], out[64];
	CHECK_EQ(shadowd_ring_poll(r), 0);
	CHECK_EQ(shadowd_ring_read(r, out, sizeof(out), NULL, NULL, NULL), 0);
	for (uint64_t i = 0; i < 10; i++) {
		t_fill(buf, 64, i);
		CHECK_EQ(shadowd_ring_write(w, buf, 8 + 8 * (uint32_t)(i % 8), 1000 + (int64_t)i), 0);
	}
	CHECK_EQ(shadowd_ring_poll(r), 1);
	for (uint64_t i = 0; i < 10; i++) {
		uint32_t len = 0;
		int64_t t = 0;
		uint64_t dropped = 99;
		memset(out, 0xAB, sizeof(out));
		CHECK_EQ(shadowd_ring_read(r, out, sizeof(out), &len, &t, &dropped), 1);
		CHECK_EQ(len, 8 + 8 * (i % 8));
		CHECK_EQ(t, 1000 + (int64_t)i);
		CHECK_EQ(dropped, 0);
		CHECK_EQ(t_verify(out, len), i);
		for (uint32_t k = len; k < 64; k++)
			CHECK_EQ(out[k], 0); /* short frames are zero-padded, never stale */
	}
	CHECK_EQ(shadowd_ring_read(r, out, sizeof(out), NULL, NULL, NULL), 0);
	CHECK_EQ(shadowd_ring_poll(r), 0);

	/* zero-copy path */
	void *p;
	CHECK_EQ(shadowd_ring_reserve(w, &p), 64);
	CHECK_EQ(((uintptr_t)p) % 8, 0);
	t_fill(p, 64, 77);
	CHECK_EQ(shadowd_ring_poll(r), 0); /* reserved is not published */
	CHECK_EQ(shadowd_ring_commit(w, 64, 5), 0);
	int64_t ts[4];
	uint32_t lens[4];
	unsigned char batch[4 * 64];
	CHECK_EQ(shadowd_ring_read_batch(r, batch, 64, 4, ts, lens, NULL), 1);
	CHECK_EQ(t_verify(batch, 64), 77);
	CHECK_EQ(ts[0], 5);

	struct shadowd_ring_stats st;
	CHECK_EQ(shadowd_ring_stats(r, &st), 0);
	CHECK_EQ(st.frames, 11);
	CHECK_EQ(st.dropped, 0);
	shadowd_ring_close(r);
	shadowd_ring_close(w);
	return T_PASS;
}
