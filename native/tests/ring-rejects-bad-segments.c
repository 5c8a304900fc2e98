/* Bad segments are refused with a code, never a crash: truncated, wrong magic, other layout
 * version (both versions readable from info), slot size mismatch, header that does not add
 * up, uninitialised; a second live writer; a slot whose length was scribbled over; a head
 * moved behind a reader's cursor. */
#include "helpers.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

static void patch(const char *path, off_t off, const void *bytes, size_t n)
{
	int fd = open(path, O_RDWR);
	CHECK(fd >= 0);
	CHECK_EQ(pwrite(fd, bytes, n, off), (long long)n);
	close(fd);
}

static void fresh(const char *path, struct shadowd_ring **w)
{
	unlink(path);
	CHECK_EQ(shadowd_ring_create(path, 40, 8, 0, 0, w), 0);
	unsigned char buf[40];
	for (uint64_t i = 0; i < 3; i++) {
		t_fill(buf, 40, i);
		CHECK_EQ(shadowd_ring_write(*w, buf, 40, (int64_t)i), 0);
	}
}

int main(void)
{
	const char *path = t_segment_path("bad");
	struct shadowd_ring *w, *r;
	struct shadowd_ring_info info;
	uint64_t seg = shadowd_ring_segment_size(40, 8);

	/* missing */
	CHECK_EQ(shadowd_ring_open(path, 0, 0, &info, &r), -ENOENT);

	/* truncated: header only, then less than a header */
	fresh(path, &w);
	shadowd_ring_close(w);
	CHECK_EQ(truncate(path, (off_t)seg - 1), 0);
	CHECK_EQ(shadowd_ring_open(path, 0, 0, &info, &r), -EBADMSG);
	CHECK(info.file_size == seg - 1 && info.segment_size == seg);
	CHECK_EQ(truncate(path, 100), 0);
	CHECK_EQ(shadowd_ring_open(path, 0, 0, &info, &r), -EBADMSG);
	CHECK_EQ(info.file_size, 100);
	CHECK_EQ(truncate(path, 0), 0);
	CHECK_EQ(shadowd_ring_open(path, 0, 0, &info, &r), -EBADMSG);

	/* wrong magic */
	fresh(path, &w);
	shadowd_ring_close(w);
	patch(path, 0, "NOTARING", 8);
	CHECK_EQ(shadowd_ring_open(path, 0, 0, &info, &r), -EBADMSG);
	CHECK(info.magic == 0x474e495241544f4eULL);
	/* create() on it refuses rather than trampling a foreign file */
	CHECK_EQ(shadowd_ring_create(path, 40, 8, 0, 0, &w), -EEXIST);

	/* uninitialised (creator died before publishing the magic): retry later */
	fresh(path, &w);
	shadowd_ring_close(w);
	patch(path, 0, "\0\0\0\0\0\0\0\0", 8);
	CHECK_EQ(shadowd_ring_open(path, 0, 0, &info, &r), -EAGAIN);
	CHECK_EQ(shadowd_ring_create(path, 40, 8, 0, 0, &w), 0); /* a writer redoes it */
	shadowd_ring_close(w);
	CHECK_EQ(shadowd_ring_open(path, 0, 0, &info, &r), 0);
	shadowd_ring_close(r);

	/* other layout version: refused, both versions at hand */
	fresh(path, &w);
	shadowd_ring_close(w);
	uint32_t v = 7;
	patch(path, 8, &v, 4);
	CHECK_EQ(shadowd_ring_open(path, 0, 0, &info, &r), -EPROTO);
	CHECK_EQ(info.layout_version, 7);
	CHECK_EQ(shadowd_ring_create(path, 40, 8, 0, 0, &w), -EEXIST);

	/* payload (slot size) mismatch with what the reader expects */
	fresh(path, &w);
	CHECK_EQ(shadowd_ring_open(path, 48, 0, &info, &r), -EMSGSIZE);
	CHECK_EQ(info.payload_max, 40);
	/* a second writer while the first lives */
	struct shadowd_ring *w2;
	CHECK_EQ(shadowd_ring_create(path, 40, 8, 0, 0, &w2), -EBUSY);
	/* other parameters on an existing segment: refused unless REPLACE */
	shadowd_ring_close(w);
	CHECK_EQ(shadowd_ring_create(path, 40, 16, 0, 0, &w2), -EEXIST);
	CHECK_EQ(shadowd_ring_create(path, 40, 16, 0, SHADOWD_RING_REPLACE, &w2), 0);
	shadowd_ring_close(w2);
	/* REPLACE on a compatible segment re-attaches (readers keep reading across restarts) */
	CHECK_EQ(shadowd_ring_create(path, 40, 16, 0, SHADOWD_RING_REPLACE, &w2), 0);
	CHECK_EQ(shadowd_ring_info(w2, &info), 0);
	CHECK_EQ(info.writer_generation, 2);
	shadowd_ring_close(w2);
	/* REPLACE also takes over a foreign or corrupt file */
	patch(path, 0, "NOTARING", 8);
	CHECK_EQ(shadowd_ring_create(path, 40, 16, 0, SHADOWD_RING_REPLACE, &w2), 0);
	shadowd_ring_close(w2);

	/* header fields that do not add up */
	uint32_t bad_slot = 4096;
	fresh(path, &w);
	shadowd_ring_close(w);
	patch(path, 16, &bad_slot, 4);
	CHECK_EQ(shadowd_ring_open(path, 0, 0, &info, &r), -EBADMSG);
	uint64_t bad_cap = 12;
	fresh(path, &w);
	shadowd_ring_close(w);
	patch(path, 24, &bad_cap, 8);
	CHECK_EQ(shadowd_ring_open(path, 0, 0, &info, &r), -EBADMSG);
	uint64_t huge_cap = 1ULL << 40;
	patch(path, 24, &huge_cap, 8);
	CHECK_EQ(shadowd_ring_open(path, 0, 0, &info, &r), -EBADMSG);

	/* a slot length scribbled past the payload: read refuses, nothing is copied out of bounds */
	fresh(path, &w);
	CHECK_EQ(shadowd_ring_open(path, 40, SHADOWD_RING_FROM_OLDEST, &info, &r), 0);
	uint32_t bad_len = 0xFFFFFF00u;
	patch(path, SHADOWD_RING_HEADER_SIZE + 1 * (SHADOWD_RING_SLOT_HEADER_SIZE + 40) + 16, &bad_len, 4);
	unsigned char out[4 * 40];
	CHECK_EQ(shadowd_ring_read_batch(r, out, 40, 4, NULL, NULL, NULL), 1); /* frame 0 is fine */
	CHECK_EQ(shadowd_ring_read_batch(r, out, 40, 4, NULL, NULL, NULL), -EBADMSG);
	CHECK_EQ(shadowd_ring_find(r, 0, 10, out, 40, 4, NULL, NULL, NULL), -EBADMSG);
	shadowd_ring_close(r);

	/* a stamp scribbled inside the valid window */
	CHECK_EQ(shadowd_ring_open(path, 40, SHADOWD_RING_FROM_OLDEST, &info, &r), 0);
	uint64_t bad_stamp = 12345;
	patch(path, SHADOWD_RING_HEADER_SIZE + 0 * (SHADOWD_RING_SLOT_HEADER_SIZE + 40), &bad_stamp, 8);
	CHECK_EQ(shadowd_ring_read_batch(r, out, 40, 4, NULL, NULL, NULL), -EBADMSG);
	shadowd_ring_close(r);

	/* the head moved behind a reader's cursor */
	CHECK_EQ(shadowd_ring_open(path, 40, 0, &info, &r), 0); /* cursor 3 */
	uint64_t head = 1;
	patch(path, 128, &head, 8);
	CHECK_EQ(shadowd_ring_read_batch(r, out, 40, 4, NULL, NULL, NULL), -EBADMSG);
	shadowd_ring_close(r);
	shadowd_ring_close(w);
	return T_PASS;
}
