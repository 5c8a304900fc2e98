/*
 * shadowd/ring.h: the shared-memory frame ring, and the producer API for C programs.
 *
 * CONCURRENCY CONTRACT: one writer, any number of readers, in any processes, per segment.
 *   - The writer never blocks and never waits for readers: when the ring is full it
 *     overwrites the oldest slot. A second writer on the same segment is refused (-EBUSY,
 *     via flock on the segment file), so the single-writer rule is enforced, not assumed.
 *   - Each reader keeps its cursor in its own process memory (struct shadowd_ring), so
 *     readers never write to the segment except to announce that they sleep (wait()).
 *     A reader that was lapped learns how many frames it lost and resumes at the oldest frame
 *     still valid. A slot overwritten while it was being copied is detected (per-slot
 *     seqlock stamp) and never returned as data.
 *   - One struct shadowd_ring handle must be used by one thread at a time; open one handle
 *     per reading thread.
 *   - Progress: writer calls are wait-free; read/poll/find are lock-free (they retry only when
 *     the writer overwrote what they were copying); wait() sleeps on a futex.
 *
 * A segment is a file, normally under /dev/shm (shm_open's home on Linux), e.g.
 * "/dev/shm/shadowd.vehicle"; any path on a tmpfs or disk file system works. Layout (all
 * little-endian, offsets fixed by SHADOWD_RING_LAYOUT_VERSION, see docs/ring.md):
 * a 384-byte header (magic, layout version, slot size, capacity, writer pid and generation,
 * the head sequence on its own cache line, the futex word on another), then `capacity` slots
 * of `slot_size` bytes (24-byte slot header: stamp, t_ns, length; then the payload; rounded
 * up to whole 64-byte cache lines).
 *
 * Sequence numbers are 64-bit and run free (they are never reset, slot = seq & (capacity-1));
 * every comparison goes through an unsigned difference, so wrapping past 2^64 is harmless.
 *
 * RETURN CODES: every int function returns >= 0 on success, otherwise a negative errno:
 *   -EINVAL    bad argument (NULL, capacity not a power of two, stride too small, ...)
 *   -ENOMEM    out of process memory
 *   -EBUSY     another live writer holds the segment / a reservation is already open
 *   -EEXIST    create: a segment with other parameters exists (pass SHADOWD_RING_REPLACE)
 *   -EPROTO    the segment has another layout version (info->layout_version says which)
 *   -EMSGSIZE  the segment's payload size differs from the one asked for / frame too long
 *   -EBADMSG   the segment is not a ring, is truncated or its header/slots do not add up
 *   -EAGAIN    the segment exists but its creator has not finished initialising it
 *   -EPERM     a writer call on a reader handle or the reverse
 *   other      a negative errno from open/mmap/ftruncate/fstat/futex (-ENOENT, -EACCES, ...)
 *
 * This file doubles as the cffi cdef: everything between the cffi-begin and cffi-end
 * markers must stay in the subset cffi parses (no macros with expressions, no attributes).
 * Keep in sync with native/src/ring.c (layout) and shadowd/ring.py (ABI handshake).
 */
#ifndef SHADOWD_RING_H
#define SHADOWD_RING_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* cffi-begin */
#define SHADOWD_RING_ABI_VERSION 1
#define SHADOWD_RING_LAYOUT_VERSION 1
#define SHADOWD_RING_HEADER_SIZE 384
#define SHADOWD_RING_SLOT_HEADER_SIZE 24
#define SHADOWD_RING_MAX_PAYLOAD 1048576
#define SHADOWD_RING_MAX_CAPACITY 16777216

/* create() flags: replace a segment with other parameters, another layout or a corrupt header
 * by a new one (never while its writer is alive: that stays -EBUSY). A compatible segment
 * is always re-attached, so readers keep reading across a producer restart. */
#define SHADOWD_RING_REPLACE 1
/* open() flags: where the new reader's cursor starts (default: at the head, new frames only) */
#define SHADOWD_RING_FROM_OLDEST 2

struct shadowd_ring;

/* What a segment header says; filled by open() even when it refuses the segment, so the
 * caller can quote both versions / sizes in its message. Fields not read yet are 0. */
struct shadowd_ring_info {
	uint64_t magic;
	uint32_t layout_version;
	uint32_t header_size;
	uint32_t slot_size;
	uint32_t payload_max;
	uint64_t capacity;
	uint64_t segment_size;      /* size the header claims */
	uint64_t file_size;         /* size the file really has */
	uint64_t start_seq;         /* sequence of the first frame ever written */
	uint64_t head;              /* sequence of the next frame to be committed */
	uint64_t oldest;            /* oldest sequence that may still be valid */
	int32_t writer_pid;         /* 0 when no writer is attached */
	uint32_t writer_generation; /* +1 each time a writer attaches */
};

/* Per-handle counters (process local). */
struct shadowd_ring_stats {
	uint64_t frames;    /* frames returned by read/read_batch (reader) or committed (writer) */
	uint64_t dropped;   /* frames this reader lost because the writer lapped it */
	uint64_t torn;      /* copies discarded because the slot was overwritten mid-copy */
	uint64_t cursor;    /* next sequence this handle reads (reader) or writes (writer) */
};

/* Always SHADOWD_RING_ABI_VERSION of the compiled library (import-time handshake). */
int shadowd_ring_abi_version(void);

/* Bytes of a segment holding `capacity` slots of `payload_max` payload bytes; 0 if the
 * arguments are invalid (capacity not a power of two in [2, MAX_CAPACITY], payload 0 or
 * above MAX_PAYLOAD). Use it for memory budgets. */
uint64_t shadowd_ring_segment_size(uint32_t payload_max, uint64_t capacity);

/* Create (or re-attach to) the segment at `path` as its one writer.
 * A segment with the same payload_max and capacity is re-attached: writing resumes at its
 * head (this is how a restarted producer recovers after a crash, even one between reserve
 * and commit; readers keep their cursors). Otherwise a new one is created (an existing
 * incompatible one only with SHADOWD_RING_REPLACE; unlink(2) first for a fresh ring);
 * `start_seq` is the first sequence number
 * (0 in production; tests start near 2^32 or 2^64 to exercise the wrap).
 * Returns 0 and *out, or -EINVAL, -EBUSY (another writer is alive), -EEXIST (a segment with
 * other parameters exists and flags lacks SHADOWD_RING_REPLACE), -EPROTO, -EBADMSG, -ENOMEM,
 * or an errno from open/ftruncate/mmap. */
int shadowd_ring_create(const char *path, uint32_t payload_max, uint64_t capacity,
			uint64_t start_seq, uint32_t flags, struct shadowd_ring **out);

/* Open the segment at `path` as a reader. expected_payload 0 accepts any payload size,
 * otherwise a different one is refused with -EMSGSIZE. `info` (may be NULL) receives what
 * the header says, also on -EPROTO / -EMSGSIZE / -EBADMSG. The cursor starts at info->head
 * (only frames committed after open are read) or, with SHADOWD_RING_FROM_OLDEST, at
 * info->oldest, the oldest frame that may still be valid. Returns 0, -EINVAL, -ENOENT, -EPROTO, -EMSGSIZE, -EBADMSG, -EAGAIN,
 * -ENOMEM or an errno from open/fstat/mmap. */
int shadowd_ring_open(const char *path, uint32_t expected_payload, uint32_t flags,
		      struct shadowd_ring_info *info, struct shadowd_ring **out);

/* Unmap and free the handle. A writer marks the segment as having no writer (pid 0).
 * The segment file stays (readers may still hold it); remove it with unlink(2). NULL is
 * accepted. */
void shadowd_ring_close(struct shadowd_ring *r);

/* ---- writer ---- */

/* Zero-copy write, step 1: *payload points at the next slot's payload (payload_max bytes,
 * 8-byte aligned). Readers already see that slot as being overwritten. Returns payload_max,
 * or -EINVAL, -EPERM (reader handle), -EBUSY (a reservation is already open). */
int shadowd_ring_reserve(struct shadowd_ring *w, void **payload);

/* Zero-copy write, step 2: publish the reserved slot with `length` bytes and timestamp t_ns
 * (monotonic ns, non-decreasing per writer: find() relies on it) and wake sleeping readers.
 * Returns 0, -EINVAL (no reservation), -EPERM, -EMSGSIZE (length > payload_max; the
 * reservation stays open). */
int shadowd_ring_commit(struct shadowd_ring *w, uint32_t length, int64_t t_ns);

/* reserve + copy + commit. Returns 0, -EINVAL, -EPERM, -EBUSY, -EMSGSIZE. */
int shadowd_ring_write(struct shadowd_ring *w, const void *data, uint32_t length, int64_t t_ns);

/* Write n frames of `stride` bytes each from `frames`, waking readers once. Each frame's
 * timestamp is the little-endian int64 at byte `t_ns_offset` of the frame (0 for every
 * shadowd topic dtype), or 0 when t_ns_offset < 0. Returns n, or -EINVAL, -EPERM, -EBUSY,
 * -EMSGSIZE (stride > payload_max; nothing written). */
int shadowd_ring_write_batch(struct shadowd_ring *w, const void *frames, uint32_t stride,
			     uint32_t n, int32_t t_ns_offset);

/* ---- reader ---- */

/* Copy the next frame into out (out_size >= payload_max). *length, *t_ns, *dropped may be
 * NULL; *dropped receives the frames lost to lapping before this one. Returns 1 (a frame),
 * 0 (nothing new), -EINVAL, -EPERM, -EBADMSG (a slot or the head contradicts the layout). */
int shadowd_ring_read(struct shadowd_ring *r, void *out, uint32_t out_size, uint32_t *length,
		      int64_t *t_ns, uint64_t *dropped);

/* Copy up to max_n next frames into out, one every `stride` bytes (stride >= payload_max;
 * a shorter frame is zero-padded to payload_max). t_ns and lengths (arrays of max_n, may
 * be NULL) receive each frame's timestamp and length; *dropped (may be NULL) the frames lost
 * to lapping during this call. Returns the number of frames copied (0 when none is new),
 * or -EINVAL, -EPERM, -EBADMSG. */
int shadowd_ring_read_batch(struct shadowd_ring *r, void *out, uint32_t stride, uint32_t max_n,
			    int64_t *t_ns, uint32_t *lengths, uint64_t *dropped);

/* Non-blocking: 1 when at least one frame is ready to read, 0 when none, -EINVAL. */
int shadowd_ring_poll(struct shadowd_ring *r);

/* Block until a frame is ready or timeout_ns passes (< 0: forever, 0: poll). Polls the head
 * a few microseconds first, then sleeps on the segment's futex; the writer only makes the
 * wake system call when a reader announced it sleeps. Returns 1 ready, 0 timed out,
 * -EINVAL, -EPERM, or an errno from futex. */
int shadowd_ring_wait(struct shadowd_ring *r, int64_t timeout_ns);

/* shadowd_ring_wait for `frames` unread frames: the thread is woken by the writer's publish of
 * each frame (the same futex), but returns only once `frames` are ready or timeout_ns passes,
 * so a reader that wants every k-th frame sleeps without a timer. 1 ready (frames == 0: at
 * once), 0 timed out, -EINVAL, -EPERM, or an errno from futex. */
int shadowd_ring_wait_for(struct shadowd_ring *r, uint64_t frames, int64_t timeout_ns);

/* A service wake-up's reads in one call: each reader's next frames straight into the memory
 * of their consumer (ShadowCore's buffers), filtered as the consumer would on arrival.
 * In: ring (a reader), frames/t_ns (room frames of `stride` >= payload_max bytes, room
 * times), t_ns_offset (where a frame's own little-endian int64 time is: 0 for every shadowd
 * topic), late_ns (frames stamped at or before it are late), floor_ns (frames not after it,
 * or not after the previous frame kept, are out of order). Out: n frames kept, in order, at
 * frames[0..n) with their times at t_ns[0..n); read (frames taken from the ring), late and
 * out_of_order (dropped), full (the read filled room: more may wait), dropped (lost to
 * lapping), last_ns (time of the last frame read that was not late, in read order;
 * unchanged when none), error (0, or what shadowd_ring_read_batch returned; that ring's
 * counts are then 0). With `append` set, the destination then moves past the frames kept
 * (frames, t_ns and room advance, floor_ns becomes the last kept time), so the next call
 * appends after them; a destination whose room is used up reads nothing and says full.
 * summary (may be NULL) gets the same results as SHADOWD_RING_DRAIN_SUMMARY int64s per ring:
 * read, n, late, out_of_order, full, dropped, last_ns, error (one array for a caller to take
 * in one piece). Returns 0, or -EINVAL (a NULL array with room > 0, n_rings > 0 with d NULL). */
#define SHADOWD_RING_DRAIN_ABI_VERSION 1
#define SHADOWD_RING_DRAIN_SUMMARY 8
struct shadowd_ring_drain {
	struct shadowd_ring *ring;
	void *frames;
	int64_t *t_ns;
	uint32_t stride, room;
	int32_t t_ns_offset;
	int32_t append;
	int64_t late_ns, floor_ns;
	uint32_t n, read, late, out_of_order, full;
	uint64_t dropped;
	int64_t last_ns;
	int error;
};
int shadowd_ring_drain_abi_version(void);
int shadowd_ring_drain(struct shadowd_ring_drain *d, size_t n_rings, int64_t *summary);

/* Copy the still-valid frames with t0_ns <= t_ns <= t1_ns (oldest first, at most max_n)
 * without moving any cursor: binary search over the valid sequence window, then a forward
 * copy. A frame overwritten during the copy is skipped. *matched (may be NULL) receives how
 * many frames matched, which may exceed max_n. Works on writer and reader handles.
 * Returns the number copied, or -EINVAL, -EBADMSG. */
int shadowd_ring_find(struct shadowd_ring *r, int64_t t0_ns, int64_t t1_ns, void *out,
		      uint32_t stride, uint32_t max_n, int64_t *t_ns, uint32_t *lengths,
		      uint64_t *matched);

/* Move a reader's cursor: whence 0 = to the head (skip everything), 1 = to the oldest valid
 * frame. Returns 0, -EINVAL, -EPERM. */
int shadowd_ring_seek(struct shadowd_ring *r, int whence);

/* ---- both ---- */

/* Fill *info from the live header. Returns 0 or -EINVAL. */
int shadowd_ring_info(struct shadowd_ring *r, struct shadowd_ring_info *info);

/* Fill *stats with this handle's counters. Returns 0 or -EINVAL. */
int shadowd_ring_stats(struct shadowd_ring *r, struct shadowd_ring_stats *stats);

/* 1 when the segment's writer process is alive (same pid and start time as when it
 * attached), 0 when it closed, died or none ever attached, -EINVAL. */
int shadowd_ring_writer_alive(struct shadowd_ring *r);
/* cffi-end */

#ifdef __cplusplus
}
#endif

#endif /* SHADOWD_RING_H */
