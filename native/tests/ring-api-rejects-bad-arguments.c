/* Every entry point returns a code for bad arguments and wrong roles; none crashes. */
#include "helpers.h"

int main(void)
{
	const char *path = t_segment_path("args");
	struct shadowd_ring *w, *r;
	unsigned char buf[64];
	CHECK_EQ(shadowd_ring_abi_version(), SHADOWD_RING_ABI_VERSION);
	CHECK(shadowd_ring_segment_size(64, 8) == SHADOWD_RING_HEADER_SIZE + 8 * 128);
	CHECK(shadowd_ring_segment_size(40, 8) == SHADOWD_RING_HEADER_SIZE + 8 * 64);
	CHECK(shadowd_ring_segment_size(41, 8) == SHADOWD_RING_HEADER_SIZE + 8 * 128);
	CHECK(shadowd_ring_segment_size(0, 8) == 0);
	CHECK(shadowd_ring_segment_size(64, 12) == 0);
	CHECK(shadowd_ring_segment_size(64, 1) == 0);
	CHECK(shadowd_ring_segment_size(SHADOWD_RING_MAX_PAYLOAD + 1, 8) == 0);
	CHECK(shadowd_ring_segment_size(64, (uint64_t)SHADOWD_RING_MAX_CAPACITY * 2) == 0);
	CHECK_EQ(shadowd_ring_create(NULL, 64, 8, 0, 0, &w), -EINVAL);
	CHECK_EQ(shadowd_ring_create(path, 64, 8, 0, 0, NULL), -EINVAL);
	CHECK_EQ(shadowd_ring_create(path, 64, 12, 0, 0, &w), -EINVAL);
	CHECK_EQ(shadowd_ring_create(path, 0, 8, 0, 0, &w), -EINVAL);
	CHECK_EQ(shadowd_ring_create("/nonexistent-dir/x/y", 64, 8, 0, 0, &w), -ENOENT);
	CHECK_EQ(shadowd_ring_open(NULL, 0, 0, NULL, &r), -EINVAL);
	CHECK_EQ(shadowd_ring_create(path, 64, 8, 0, 0, &w), 0);
	CHECK_EQ(shadowd_ring_open(path, 0, 0, NULL, &r), 0);

	/* roles */
	CHECK_EQ(shadowd_ring_write(r, buf, 8, 0), -EPERM);
	CHECK_EQ(shadowd_ring_write_batch(r, buf, 8, 1, 0), -EPERM);
	void *p;
	CHECK_EQ(shadowd_ring_reserve(r, &p), -EPERM);
	CHECK_EQ(shadowd_ring_commit(r, 8, 0), -EPERM);
	CHECK_EQ(shadowd_ring_read(w, buf, 64, NULL, NULL, NULL), -EPERM);
	CHECK_EQ(shadowd_ring_wait(w, 0), -EPERM);
	CHECK_EQ(shadowd_ring_seek(w, 0), -EPERM);

	/* writer misuse */
	CHECK_EQ(shadowd_ring_commit(w, 8, 0), -EINVAL); /* no reservation */
	CHECK_EQ(shadowd_ring_write(w, buf, 65, 0), -EMSGSIZE);
	CHECK_EQ(shadowd_ring_write(w, NULL, 8, 0), -EINVAL);
	CHECK_EQ(shadowd_ring_write_batch(w, buf, 65, 1, 0), -EMSGSIZE);
	CHECK_EQ(shadowd_ring_write_batch(w, buf, 8, 1, 4), -EINVAL); /* t_ns past the frame */
	CHECK_EQ(shadowd_ring_reserve(w, &p), 64);
	CHECK_EQ(shadowd_ring_reserve(w, &p), -EBUSY);
	CHECK_EQ(shadowd_ring_write(w, buf, 8, 0), -EBUSY);
	CHECK_EQ(shadowd_ring_commit(w, 65, 0), -EMSGSIZE); /* reservation stays open */
	CHECK_EQ(shadowd_ring_commit(w, 64, 0), 0);

	/* reader misuse */
	CHECK_EQ(shadowd_ring_read(r, buf, 63, NULL, NULL, NULL), -EINVAL); /* out too small */
	CHECK_EQ(shadowd_ring_read_batch(r, NULL, 64, 1, NULL, NULL, NULL), -EINVAL);
	CHECK_EQ(shadowd_ring_read_batch(r, buf, 64, 0, NULL, NULL, NULL), 0);
	CHECK_EQ(shadowd_ring_find(r, 0, 1, buf, 8, 1, NULL, NULL, NULL), -EINVAL);
	CHECK_EQ(shadowd_ring_seek(r, 5), -EINVAL);
	CHECK_EQ(shadowd_ring_poll(NULL), -EINVAL);
	CHECK_EQ(shadowd_ring_wait(NULL, 0), -EINVAL);
	CHECK_EQ(shadowd_ring_info(NULL, NULL), -EINVAL);
	CHECK_EQ(shadowd_ring_stats(r, NULL), -EINVAL);
	CHECK_EQ(shadowd_ring_writer_alive(NULL), -EINVAL);
	shadowd_ring_close(NULL);
	shadowd_ring_close(r);
	shadowd_ring_close(w);
	return T_PASS;
}
