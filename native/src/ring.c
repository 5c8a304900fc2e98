/*
 * ring.c: the shared-memory frame ring (one writer, any number of readers, any processes).
 *
 * Owns the segment layout and every protocol step on it. Rules of this file:
 *   1. Memory orders are spelled only in atomics.h; each call site says what it orders.
 *   2. Nothing read from the segment is trusted: header fields are validated once at open and
 *      then cached in the process-local handle (a peer scribbling over the header later cannot
 *      steer a copy out of bounds); slot lengths are checked against the cached payload size
 *      before every copy. No abort/assert/exit on any path data can reach.
 *   3. No allocation and no system call on the write/read hot paths (the futex wake happens
 *      only when a reader announced that it sleeps).
 *   4. Sequence numbers run free over 64 bits; compare them only through unsigned
 *      differences (see ck_ring_valid): seq_before(a, b) is "a comes before b".
 *
 * Slot protocol (a seqlock per slot). Frame s lives in slot s & mask; its stamp is
 *   2s+1 while the writer copies it in, 2s+2 once committed.
 * Writer: stamp = 2s+1 (release: the previous head store is visible first); release fence;
 *   payload, length, t_ns; stamp = 2s+2 (release); head = s+1 (seq_cst exchange); if
 *   sleepers (seq_cst load): bump wake word and futex-wake.
 * Reader of frame s < head: st1 = stamp (acquire); copy; acquire fence; st2 = stamp. The
 *   copy is good iff st1 == st2 == 2s+2. Otherwise the writer lapped the reader: reload head
 *   and jump to the oldest frame that can still be intact, counting what was skipped.
 */
#define _GNU_SOURCE
#include "shadowd/ring.h"
#include "atomics.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define RING_MAGIC 0x474e495257444853ULL /* "SHDWRING" read as little-endian bytes */
/* writer_flags bit: the writer publishes without a StoreLoad fence and is registered for
 * MEMBARRIER_CMD_GLOBAL_EXPEDITED; a reader must issue that membarrier before it sleeps. */
#define WRITER_MEMBARRIER 1u

/* The shared header. Offsets are the layout (keep docs/ring.md in sync; bump
 * SHADOWD_RING_LAYOUT_VERSION on any change). Hot words sit on their own 128-byte blocks
 * (two cache lines, against the adjacent-line prefetcher) so reader polls of `head` and
 * sleepers' futex traffic never share a line with each other or with the read-mostly part. */
struct ring_header {
	shadowd_a64 magic;              /*   0: stored last at creation (release) */
	uint32_t layout_version;        /*   8 */
	uint32_t header_size;           /*  12 */
	uint32_t slot_size;             /*  16 */
	uint32_t payload_max;           /*  20 */
	uint64_t capacity;              /*  24 */
	uint64_t segment_size;          /*  32 */
	uint64_t start_seq;             /*  40 */
	shadowd_a32 writer_pid;         /*  48: 0 = no writer attached */
	shadowd_a32 writer_generation;  /*  52 */
	shadowd_a64 writer_start_ticks; /*  56: /proc/<pid>/stat starttime, against pid reuse */
	shadowd_a32 writer_flags;       /*  64: WRITER_MEMBARRIER, see publish() */
	unsigned char pad0[128 - 68];
	shadowd_a64 head;               /* 128: next sequence to commit */
	unsigned char pad1[256 - 136];
	shadowd_a32 wake_seq;           /* 256: futex word, bumped on each wake */
	shadowd_a32 sleepers;           /* 260: readers inside wait() */
	unsigned char pad2[384 - 264];
};
_Static_assert(sizeof(struct ring_header) == SHADOWD_RING_HEADER_SIZE, "header layout");

struct ring_slot {
	shadowd_a64 stamp;   /* 0: 2s+1 writing, 2s+2 committed, 0 never written */
	shadowd_ai64 t_ns;   /* 8 */
	shadowd_a32 length;  /* 16 */
	uint32_t reserved;   /* 20 */
	unsigned char payload[]; /* 24, 8-byte aligned */
};
_Static_assert(sizeof(struct ring_slot) == SHADOWD_RING_SLOT_HEADER_SIZE, "slot layout");

struct shadowd_ring {
	struct ring_header *hdr;
	unsigned char *slots;
	size_t map_size;
	int fd;
	int is_writer;
	int reserved;          /* writer: a reservation is open */
	int fast_publish;      /* writer: registered for membarrier, publishes without a fence */
	uint32_t slot_size;    /* cached, validated copies of the header */
	uint32_t payload_max;
	uint64_t capacity;
	uint64_t mask;
	uint64_t start_seq;
	uint64_t cursor;       /* reader: next seq to read; writer: next seq to write */
	uint64_t frames;
	uint64_t dropped;
	uint64_t torn;
};

#define HALF_RANGE (UINT64_MAX >> 1)
#define SPIN_BEFORE_SLEEP 64 /* wait(): polls of head before the futex: 0.2-3 us (PAUSE is 10-140 cycles) */

/* a comes strictly before b in free-running sequence space */
static inline int seq_before(uint64_t a, uint64_t b) { return a != b && b - a <= HALF_RANGE; }

static inline struct ring_slot *slot_of(const struct shadowd_ring *r, uint64_t seq)
{
	return (struct ring_slot *)(void *)(r->slots + (size_t)(seq & r->mask) * r->slot_size);
}

static inline uint64_t committed_stamp(uint64_t seq) { return (seq << 1) + 2; }

/* Oldest frame worth trying: the slot may still hold it unless the writer is mid-write. */
static inline uint64_t optimistic_oldest(const struct shadowd_ring *r, uint64_t head)
{
	return head - r->start_seq >= r->capacity ? head - r->capacity : r->start_seq;
}

/* Oldest frame that must be intact: the writer can be overwriting slot (head & mask). */
static inline uint64_t strict_oldest(const struct shadowd_ring *r, uint64_t head)
{
	return head - r->start_seq >= r->capacity ? head - r->capacity + 1 : r->start_seq;
}

/* Slots are whole cache lines (64 B): a reader copying slot s never shares a line with the
 * writer filling slot s+1, which would bounce the line between cores on every frame. */
static uint32_t slot_size_for(uint32_t payload_max)
{
	return (SHADOWD_RING_SLOT_HEADER_SIZE + payload_max + 63u) & ~63u;
}

int shadowd_ring_abi_version(void) { return SHADOWD_RING_ABI_VERSION; }

uint64_t shadowd_ring_segment_size(uint32_t payload_max, uint64_t capacity)
{
	if (payload_max == 0 || payload_max > SHADOWD_RING_MAX_PAYLOAD)
		return 0;
	if (capacity < 2 || capacity > SHADOWD_RING_MAX_CAPACITY || (capacity & (capacity - 1)))
		return 0;
	return SHADOWD_RING_HEADER_SIZE + capacity * slot_size_for(payload_max);
}

/* starttime (field 22) and state (field 3) of /proc/<pid>/stat; 0 when unreadable. */
static uint64_t proc_start_ticks(int pid, char *state)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	if (!p || p[1] != ' ')
		return 0;
	p += 2;
	if (state)
		*state = *p;
	for (int field = 3; field < 22; field++) {
		p = strchr(p, ' ');
		if (!p)
			return 0;
		p++;
	}
	return strtoull(p, NULL, 10);
}

static void fill_info(const struct ring_header *h, uint64_t file_size, struct shadowd_ring_info *info)
{
	memset(info, 0, sizeof(*info));
	info->file_size = file_size;
	if (file_size < SHADOWD_RING_HEADER_SIZE)
		return;
	struct ring_header *m = (struct ring_header *)h;
	info->magic = load_acquire64(&m->magic);
	info->layout_version = h->layout_version;
	info->header_size = h->header_size;
	info->slot_size = h->slot_size;
	info->payload_max = h->payload_max;
	info->capacity = h->capacity;
	info->segment_size = h->segment_size;
	info->start_seq = h->start_seq;
	info->head = load_acquire64(&m->head);
	info->writer_pid = (int32_t)load_relaxed32(&m->writer_pid);
	info->writer_generation = load_relaxed32(&m->writer_generation);
	uint64_t used = info->head - info->start_seq;
	info->oldest = used >= info->capacity && info->capacity ? info->head - info->capacity : info->start_seq;
}

/* Validate a mapped header against the layout this build reads. */
static int check_header(const struct ring_header *h, uint64_t file_size)
{
	if (file_size < SHADOWD_RING_HEADER_SIZE)
		return -EBADMSG;
	uint64_t magic = load_acquire64((shadowd_a64 *)&h->magic);
	if (magic == 0)
		return -EAGAIN;
	if (magic != RING_MAGIC)
		return -EBADMSG;
	if (h->layout_version != SHADOWD_RING_LAYOUT_VERSION)
		return -EPROTO;
	if (h->header_size != SHADOWD_RING_HEADER_SIZE)
		return -EBADMSG;
	uint64_t size = shadowd_ring_segment_size(h->payload_max, h->capacity);
	if (size == 0 || h->slot_size != slot_size_for(h->payload_max) || h->segment_size != size)
		return -EBADMSG;
	if (file_size < size)
		return -EBADMSG;
	return 0;
}

static struct shadowd_ring *handle_new(int fd, void *map, size_t map_size, int is_writer)
{
	struct shadowd_ring *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->hdr = map;
	r->slots = (unsigned char *)map + SHADOWD_RING_HEADER_SIZE;
	r->map_size = map_size;
	r->fd = fd;
	r->is_writer = is_writer;
	r->slot_size = r->hdr->slot_size;
	r->payload_max = r->hdr->payload_max;
	r->capacity = r->hdr->capacity;
	r->mask = r->capacity - 1;
	r->start_seq = r->hdr->start_seq;
	return r;
}

static int map_fd(int fd, size_t size, void **map)
{
	void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		return -errno;
	*map = m;
	return 0;
}

static void writer_attach(struct shadowd_ring *w)
{
	struct ring_header *h = w->hdr;
	int pid = getpid();
	w->cursor = load_acquire64(&h->head);
	/* Registering lets sleeping readers run a barrier on our CPU (membarrier(2), Linux >=
	 * 4.16), so publish() can skip the per-frame StoreLoad fence. Without it: the fence. */
	w->fast_publish = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0;
	store_relaxed32(&h->writer_flags, w->fast_publish ? WRITER_MEMBARRIER : 0);
	store_relaxed64(&h->writer_start_ticks, proc_start_ticks(pid, NULL));
	atomic_fetch_add_explicit(&h->writer_generation, 1, memory_order_relaxed);
	/* release: a reader that sees our pid also sees our start ticks */
	atomic_store_explicit(&h->writer_pid, (uint32_t)pid, memory_order_release);
}

int shadowd_ring_create(const char *path, uint32_t payload_max, uint64_t capacity,
			uint64_t start_seq, uint32_t flags, struct shadowd_ring **out)
{
	if (!path || !out)
		return -EINVAL;
	*out = NULL;
	uint64_t size = shadowd_ring_segment_size(payload_max, capacity);
	if (size == 0 || size > SIZE_MAX)
		return -EINVAL;
	for (int attempt = 0; attempt < 2; attempt++) {
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (fd < 0)
			return -errno;
		if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
			int err = errno == EWOULDBLOCK ? -EBUSY : -errno;
			close(fd);
			return err;
		}
		struct stat st;
		if (fstat(fd, &st) != 0) {
			int err = -errno;
			close(fd);
			return err;
		}
		void *map = NULL;
		int rc;
		if (st.st_size > 0) {
			/* An existing segment: re-attach if it is ours and compatible. */
			size_t msize = (size_t)st.st_size;
			rc = map_fd(fd, msize, &map);
			if (rc) {
				close(fd);
				return rc;
			}
			struct ring_header *h = map;
			int chk = check_header(h, (uint64_t)st.st_size);
			if (chk == 0 && h->payload_max == payload_max && h->capacity == capacity) {
				struct shadowd_ring *w = handle_new(fd, map, msize, 1);
				if (!w) {
					munmap(map, msize);
					close(fd);
					return -ENOMEM;
				}
				writer_attach(w);
				*out = w;
				return 0;
			}
			int uninitialised = chk == -EAGAIN;
			munmap(map, msize);
			if (!uninitialised) {
				if (!(flags & SHADOWD_RING_REPLACE) || attempt > 0) {
					close(fd);
					return -EEXIST;
				}
				/* Replace: a new inode; readers of the old one keep it and see its writer
				 * gone (they reopen by name). We hold the old one's lock, so no live
				 * writer loses its ring. */
				if (unlink(path) != 0 && errno != ENOENT) {
					int err = -errno;
					close(fd);
					return err;
				}
				close(fd);
				continue;
			}
			/* The creator died before publishing the magic; we hold the lock: redo it. */
		}
		if (ftruncate(fd, 0) != 0 || ftruncate(fd, (off_t)size) != 0) {
			int err = -errno;
			close(fd);
			return err;
		}
		rc = map_fd(fd, (size_t)size, &map);
		if (rc) {
			close(fd);
			return rc;
		}
		struct ring_header *h = map;
		h->layout_version = SHADOWD_RING_LAYOUT_VERSION;
		h->header_size = SHADOWD_RING_HEADER_SIZE;
		h->slot_size = slot_size_for(payload_max);
		h->payload_max = payload_max;
		h->capacity = capacity;
		h->segment_size = size;
		h->start_seq = start_seq;
		store_relaxed64(&h->head, start_seq);
		/* release: a reader that sees the magic sees every field above */
		store_release64(&h->magic, RING_MAGIC);
		struct shadowd_ring *w = handle_new(fd, map, (size_t)size, 1);
		if (!w) {
			munmap(map, (size_t)size);
			close(fd);
			return -ENOMEM;
		}
		writer_attach(w);
		*out = w;
		return 0;
	}
	return -EEXIST;
}

int shadowd_ring_open(const char *path, uint32_t expected_payload, uint32_t flags,
		      struct shadowd_ring_info *info, struct shadowd_ring **out)
{
	struct shadowd_ring_info scratch;
	if (!info)
		info = &scratch;
	memset(info, 0, sizeof(*info));
	if (!path || !out)
		return -EINVAL;
	*out = NULL;
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	info->file_size = (uint64_t)st.st_size;
	if ((uint64_t)st.st_size < SHADOWD_RING_HEADER_SIZE || (uint64_t)st.st_size > SIZE_MAX) {
		close(fd);
		return -EBADMSG;
	}
	void *map = NULL;
	size_t msize = (size_t)st.st_size;
	int rc = map_fd(fd, msize, &map);
	if (rc) {
		close(fd);
		return rc;
	}
	fill_info(map, (uint64_t)st.st_size, info);
	rc = check_header(map, (uint64_t)st.st_size);
	if (rc == 0 && expected_payload && expected_payload != info->payload_max)
		rc = -EMSGSIZE;
	if (rc) {
		munmap(map, msize);
		close(fd);
		return rc;
	}
	struct shadowd_ring *r = handle_new(fd, map, msize, 0);
	if (!r) {
		munmap(map, msize);
		close(fd);
		return -ENOMEM;
	}
	/* start from the snapshot in *info, so the caller knows exactly where the cursor is */
	r->cursor = (flags & SHADOWD_RING_FROM_OLDEST) ? optimistic_oldest(r, info->head) : info->head;
	*out = r;
	return 0;
}

void shadowd_ring_close(struct shadowd_ring *r)
{
	if (!r)
		return;
	if (r->is_writer)
		atomic_store_explicit(&r->hdr->writer_pid, 0, memory_order_release);
	munmap(r->hdr, r->map_size);
	close(r->fd); /* drops the writer's flock */
	free(r);
}

/* ---- writer ---- */

/* Publish head = next and wake sleeping readers. A Dekker pair with wait(): we store head
 * then load sleepers, the reader increments sleepers then loads head; at least one side must
 * see the other's write, or a frame lands while its reader sleeps. That needs a StoreLoad
 * barrier on both sides, and a full barrier per frame (a store-buffer drain) costs the
 * writer more than the rest of the frame. So it is asymmetric (liburcu's trick):
 *  - fast_publish (writer registered for membarrier): release store of head, compiler
 *    barrier, relaxed load of sleepers. The reader, after its increment and before its head
 *    check, runs membarrier(GLOBAL_EXPEDITED), which executes a full barrier on our CPU:
 *    either our head store preceded that barrier (the reader then sees it) or our sleepers
 *    load follows it (we then see the reader's increment and wake it).
 *  - otherwise: a seq_cst exchange of head and a seq_cst load of sleepers; with the
 *    reader's seq_cst increment and load, one of the two sees the other in the total order.
 * Either way the head store has release semantics for the slot just committed. */
static inline void publish(struct shadowd_ring *w, uint64_t next)
{
	struct ring_header *h = w->hdr;
	uint32_t sleeping;
	if (w->fast_publish) {
		store_release64(&h->head, next);
		compiler_barrier(); /* the CPU side is the reader's membarrier */
		sleeping = load_relaxed32(&h->sleepers);
	} else {
		exchange_seqcst64(&h->head, next);
		sleeping = load_seqcst32(&h->sleepers);
	}
	if (sleeping) {
		fetch_add_release32(&h->wake_seq, 1);
		syscall(SYS_futex, &h->wake_seq, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
	}
}

static inline struct ring_slot *begin_slot(struct shadowd_ring *w, uint64_t s)
{
	struct ring_slot *sl = slot_of(w, s);
	/* release: a reader that sees this odd stamp also sees head >= s (stored earlier), so
	 * it can tell the old frame in this slot is gone. */
	store_release64(&sl->stamp, committed_stamp(s) - 1);
	/* the payload writes that follow stay behind the odd stamp */
	fence_release();
	return sl;
}

static inline void end_slot(struct shadowd_ring *w, struct ring_slot *sl, uint64_t s, uint32_t length, int64_t t_ns)
{
	store_relaxed32(&sl->length, length);
	store_relaxed_i64(&sl->t_ns, t_ns);
	/* release: payload, length and t_ns are visible before the even stamp */
	store_release64(&sl->stamp, committed_stamp(s));
	w->cursor = s + 1;
	w->frames++;
}

int shadowd_ring_reserve(struct shadowd_ring *w, void **payload)
{
	if (!w || !payload)
		return -EINVAL;
	if (!w->is_writer)
		return -EPERM;
	if (w->reserved)
		return -EBUSY;
	struct ring_slot *sl = begin_slot(w, w->cursor);
	w->reserved = 1;
	*payload = sl->payload;
	return (int)w->payload_max;
}

int shadowd_ring_commit(struct shadowd_ring *w, uint32_t length, int64_t t_ns)
{
	if (!w)
		return -EINVAL;
	if (!w->is_writer)
		return -EPERM;
	if (!w->reserved)
		return -EINVAL;
	if (length > w->payload_max)
		return -EMSGSIZE;
	uint64_t s = w->cursor;
	end_slot(w, slot_of(w, s), s, length, t_ns);
	w->reserved = 0;
	publish(w, s + 1);
	return 0;
}

int shadowd_ring_write(struct shadowd_ring *w, const void *data, uint32_t length, int64_t t_ns)
{
	if (!w || (!data && length))
		return -EINVAL;
	if (!w->is_writer)
		return -EPERM;
	if (w->reserved)
		return -EBUSY;
	if (length > w->payload_max)
		return -EMSGSIZE;
	uint64_t s = w->cursor;
	struct ring_slot *sl = begin_slot(w, s);
	copy_to_shared(sl->payload, data, length);
	end_slot(w, sl, s, length, t_ns);
	publish(w, s + 1);
	return 0;
}

int shadowd_ring_write_batch(struct shadowd_ring *w, const void *frames, uint32_t stride,
			     uint32_t n, int32_t t_ns_offset)
{
	if (!w || (!frames && n) || n > INT_MAX)
		return -EINVAL;
	if (!w->is_writer)
		return -EPERM;
	if (w->reserved)
		return -EBUSY;
	if (stride > w->payload_max)
		return -EMSGSIZE;
	if (t_ns_offset >= 0 && (uint64_t)t_ns_offset + 8 > stride)
		return -EINVAL;
	const unsigned char *src = frames;
	for (uint32_t i = 0; i < n; i++, src += stride) {
		uint64_t s = w->cursor;
		int64_t t_ns = 0;
		if (t_ns_offset >= 0)
			memcpy(&t_ns, src + t_ns_offset, sizeof(t_ns));
		struct ring_slot *sl = begin_slot(w, s);
		copy_to_shared(sl->payload, src, stride);
		end_slot(w, sl, s, stride, t_ns);
		/* release: each frame is readable as it lands, a reader never waits for the end of
		 * the batch; the last one goes through publish() to wake sleepers once */
		if (i + 1 < n)
			store_release64(&w->hdr->head, s + 1);
	}
	if (n)
		publish(w, w->cursor);
	return (int)n;
}

/* ---- reader ---- */

/* Copy frame s if it is intact. Returns 1 copied, 0 overwritten/being overwritten,
 * -EBADMSG when the slot claims a length larger than its payload. */
static inline int copy_frame(struct shadowd_ring *r, uint64_t s, unsigned char *dst, uint32_t dst_size,
			     int64_t *t_ns, uint32_t *length)
{
	struct ring_slot *sl = slot_of(r, s);
	uint64_t want = committed_stamp(s);
	uint64_t st1 = load_acquire64(&sl->stamp); /* the payload reads below stay after it */
	if (st1 != want)
		return 0;
	uint32_t len = load_relaxed32(&sl->length);
	int64_t t = load_relaxed_i64(&sl->t_ns);
	int bad = len > r->payload_max; /* never trust a length from shared memory */
	if (dst && !bad) {
		copy_from_shared(dst, sl->payload, len);
		uint32_t lim = dst_size < r->payload_max ? dst_size : r->payload_max;
		if (len < lim)
			memset(dst + len, 0, lim - len);
	}
	fence_acquire(); /* the copy above completes before the stamp re-read */
	if (load_relaxed64(&sl->stamp) != st1) {
		r->torn += dst != NULL;
		return 0;
	}
	if (bad)
		return -EBADMSG;
	*t_ns = t;
	*length = len;
	return 1;
}

/* The slot of s did not hold s. Returns 1 and moves *s to the oldest intact frame if the
 * writer lapped us, 0 if s is still inside the window (retry), -EBADMSG if the head is
 * behind the cursor. */
static int relocate(struct shadowd_ring *r, uint64_t *s, uint64_t *head, uint64_t *lost)
{
	uint64_t h = load_acquire64(&r->hdr->head);
	if (seq_before(h, *s))
		return -EBADMSG;
	*head = h;
	uint64_t oldest = strict_oldest(r, h);
	if (seq_before(*s, oldest)) {
		*lost += oldest - *s;
		*s = oldest;
		return 1;
	}
	return 0;
}

int shadowd_ring_read_batch(struct shadowd_ring *r, void *out, uint32_t stride, uint32_t max_n,
			    int64_t *t_ns, uint32_t *lengths, uint64_t *dropped)
{
	if (dropped)
		*dropped = 0;
	if (!r || (!out && max_n) || stride < r->payload_max || max_n > INT_MAX)
		return -EINVAL;
	if (r->is_writer)
		return -EPERM;
	if (max_n == 0)
		return 0; /* touches nothing, not even the drop count */
	uint64_t s = r->cursor, lost = 0;
	uint64_t head = load_acquire64(&r->hdr->head);
	if (seq_before(head, s))
		return -EBADMSG;
	if (head - s > r->capacity) { /* lapped by more than a whole ring: skip ahead at once */
		lost += optimistic_oldest(r, head) - s;
		s = optimistic_oldest(r, head);
	}
	unsigned char *dst = out;
	uint32_t n = 0;
	int err = 0, retries = 0;
	while (n < max_n) {
		if (s == head) {
			head = load_acquire64(&r->hdr->head);
			if (s == head)
				break;
		}
		int64_t t;
		uint32_t len;
		int rc = copy_frame(r, s, dst, stride, &t, &len);
		if (rc == 1) {
			if (t_ns)
				t_ns[n] = t;
			if (lengths)
				lengths[n] = len;
			n++;
			s++;
			dst += stride;
			retries = 0;
			continue;
		}
		if (rc < 0) {
			err = rc;
			break;
		}
		rc = relocate(r, &s, &head, &lost);
		if (rc < 0 || (rc == 0 && ++retries > 64)) {
			err = -EBADMSG; /* a slot inside the window holds another frame: corrupt */
			break;
		}
	}
	r->cursor = s;
	r->frames += n;
	r->dropped += lost;
	if (dropped)
		*dropped = lost;
	if (n == 0 && err)
		return err;
	return (int)n; /* an error after some frames shows up on the next call */
}

int shadowd_ring_read(struct shadowd_ring *r, void *out, uint32_t out_size, uint32_t *length,
		      int64_t *t_ns, uint64_t *dropped)
{
	int64_t t = 0;
	uint32_t len = 0;
	int rc = shadowd_ring_read_batch(r, out, out_size, 1, &t, &len, dropped);
	if (rc == 1) {
		if (length)
			*length = len;
		if (t_ns)
			*t_ns = t;
	}
	return rc;
}

int shadowd_ring_poll(struct shadowd_ring *r)
{
	if (!r)
		return -EINVAL;
	return load_acquire64(&r->hdr->head) != r->cursor;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* At least `need` (>= 1) frames unread (a head that went back, which read reports as corrupt,
 * counts as ready) */
static inline int unread_at_least(uint64_t head, uint64_t cursor, uint64_t need)
{
	return head - cursor >= need || seq_before(head, cursor);
}

static int wait_unread(struct shadowd_ring *r, uint64_t need, int64_t timeout_ns)
{
	if (!r)
		return -EINVAL;
	if (r->is_writer)
		return -EPERM;
	struct ring_header *h = r->hdr;
	/* Spin briefly first: on a busy stream the next frame is usually a few microseconds
	 * away, and sleeping would make the writer pay a FUTEX_WAKE system call per frame. */
	for (int i = 0; i < SPIN_BEFORE_SLEEP && timeout_ns != 0 && need == 1; i++) {
		if (load_acquire64(&h->head) != r->cursor)
			return 1;
		cpu_relax();
	}
	int64_t deadline = timeout_ns > 0 ? now_ns() + timeout_ns : 0;
	for (;;) {
		if (unread_at_least(load_acquire64(&h->head), r->cursor, need))
			return 1;
		if (timeout_ns == 0)
			return 0;
		/* Announce the sleep, then re-check (Dekker with publish()): seq_cst RMW and
		 * load, so the writer either sees sleepers > 0 or we see its new head. A writer
		 * that skips its fence needs a barrier run on its CPU first (membarrier). */
		int64_t timeout_cap = 0;
		fetch_add_seqcst32(&h->sleepers, 1);
		if ((load_relaxed32(&h->writer_flags) & WRITER_MEMBARRIER) &&
		    syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) != 0)
			timeout_cap = 1000000; /* cannot barrier it: re-check every millisecond */
		uint32_t word = load_seqcst32(&h->wake_seq);
		int ready = unread_at_least(load_seqcst64(&h->head), r->cursor, need);
		int rc = 0;
		if (!ready) {
			struct timespec ts, *tsp = NULL;
			int64_t left = timeout_ns > 0 ? deadline - now_ns() : INT64_MAX;
			if (left <= 0) {
				fetch_sub_seqcst32(&h->sleepers, 1);
				return 0;
			}
			if (timeout_cap && left > timeout_cap)
				left = timeout_cap;
			if (left != INT64_MAX) {
				ts.tv_sec = left / 1000000000;
				ts.tv_nsec = left % 1000000000;
				tsp = &ts;
			}
			/* sleeps only while wake_seq == word: a wake between our load and here
			 * makes it return at once (EAGAIN) */
			if (syscall(SYS_futex, &h->wake_seq, FUTEX_WAIT, word, tsp, NULL, 0) != 0)
				rc = errno;
		}
		fetch_sub_seqcst32(&h->sleepers, 1);
		if (ready)
			return 1;
		if (rc && rc != EAGAIN && rc != EINTR && rc != ETIMEDOUT)
			return -rc;
		if (timeout_ns > 0 && now_ns() >= deadline)
			return unread_at_least(load_acquire64(&h->head), r->cursor, need);
	}
}

int shadowd_ring_wait(struct shadowd_ring *r, int64_t timeout_ns)
{
	return wait_unread(r, 1, timeout_ns);
}

int shadowd_ring_wait_for(struct shadowd_ring *r, uint64_t frames, int64_t timeout_ns)
{
	if (frames == 0)
		return r ? (r->is_writer ? -EPERM : 1) : -EINVAL;
	return wait_unread(r, frames, timeout_ns);
}

int shadowd_ring_find(struct shadowd_ring *r, int64_t t0_ns, int64_t t1_ns, void *out,
		      uint32_t stride, uint32_t max_n, int64_t *t_ns, uint32_t *lengths,
		      uint64_t *matched)
{
	if (matched)
		*matched = 0;
	if (!r || (!out && max_n) || (max_n && stride < r->payload_max) || max_n > INT_MAX)
		return -EINVAL;
	uint64_t head = load_acquire64(&r->hdr->head);
	uint64_t lo = optimistic_oldest(r, head);
	if (t1_ns < t0_ns || head == lo)
		return 0;
	/* Lower bound of t >= t0 over [lo, head). Overwritten slots are a prefix of the window
	 * (the writer overwrites oldest first), so "unreadable" sorts like "too old". */
	uint64_t a = 0, b = head - lo;
	while (a < b) {
		uint64_t mid = a + (b - a) / 2;
		int64_t t;
		uint32_t len;
		int rc = copy_frame(r, lo + mid, NULL, 0, &t, &len);
		if (rc < 0)
			return rc;
		if (rc == 0 || t < t0_ns)
			a = mid + 1;
		else
			b = mid;
	}
	unsigned char *dst = out;
	uint32_t n = 0;
	uint64_t count = 0;
	for (uint64_t s = lo + a; s != head; s++) {
		int64_t t;
		uint32_t len;
		int rc = copy_frame(r, s, n < max_n ? dst : NULL, stride, &t, &len);
		if (rc < 0)
			return rc;
		if (rc == 0)
			continue; /* overwritten while we looked: it is gone */
		if (t > t1_ns)
			break;
		count++;
		if (n < max_n) {
			if (t_ns)
				t_ns[n] = t;
			if (lengths)
				lengths[n] = len;
			n++;
			dst += stride;
		}
	}
	if (matched)
		*matched = count;
	return (int)n;
}

int shadowd_ring_seek(struct shadowd_ring *r, int whence)
{
	if (!r || (whence != 0 && whence != 1))
		return -EINVAL;
	if (r->is_writer)
		return -EPERM;
	uint64_t head = load_acquire64(&r->hdr->head);
	r->cursor = whence == 0 ? head : optimistic_oldest(r, head);
	return 0;
}

int shadowd_ring_info(struct shadowd_ring *r, struct shadowd_ring_info *info)
{
	if (!r || !info)
		return -EINVAL;
	fill_info(r->hdr, r->map_size, info);
	return 0;
}

int shadowd_ring_stats(struct shadowd_ring *r, struct shadowd_ring_stats *stats)
{
	if (!r || !stats)
		return -EINVAL;
	stats->frames = r->frames;
	stats->dropped = r->dropped;
	stats->torn = r->torn;
	stats->cursor = r->cursor;
	return 0;
}

int shadowd_ring_writer_alive(struct shadowd_ring *r)
{
	if (!r)
		return -EINVAL;
	int pid = (int)atomic_load_explicit(&r->hdr->writer_pid, memory_order_acquire);
	if (pid <= 0)
		return 0;
	if (kill(pid, 0) != 0 && errno == ESRCH)
		return 0;
	char state = 0;
	uint64_t ticks = proc_start_ticks(pid, &state);
	if (state == 'Z' || state == 'X')
		return 0; /* killed, not yet reaped */
	uint64_t want = load_relaxed64(&r->hdr->writer_start_ticks);
	if (ticks && want && ticks != want)
		return 0; /* the pid now belongs to another process */
	return 1;
}

int shadowd_ring_drain_abi_version(void)
{
	return SHADOWD_RING_DRAIN_ABI_VERSION;
}

static void drain_summary(const struct shadowd_ring_drain *r, int64_t *out)
{
	out[0] = r->read;
	out[1] = r->n;
	out[2] = r->late;
	out[3] = r->out_of_order;
	out[4] = r->full;
	out[5] = (int64_t)r->dropped;
	out[6] = r->last_ns;
	out[7] = r->error;
}

int shadowd_ring_drain(struct shadowd_ring_drain *d, size_t n_rings, int64_t *summary)
{
	if (n_rings && d == NULL)
		return -EINVAL;
	for (size_t i = 0; i < n_rings; i++)
		if (d[i].room && (d[i].frames == NULL || d[i].t_ns == NULL || d[i].t_ns_offset < 0 ||
				  (uint64_t)d[i].t_ns_offset + sizeof(int64_t) > d[i].stride))
			return -EINVAL;
	for (size_t i = 0; i < n_rings; i++) {
		struct shadowd_ring_drain *r = &d[i];
		uint64_t dropped = 0;
		int rc = shadowd_ring_read_batch(r->ring, r->frames, r->stride, r->room, NULL, NULL, &dropped);
		r->n = r->read = r->late = r->out_of_order = 0;
		r->full = r->room == 0;
		r->dropped = dropped;
		r->error = rc < 0 ? rc : 0;
		if (rc <= 0) {
			if (summary)
				drain_summary(r, summary + i * SHADOWD_RING_DRAIN_SUMMARY);
			continue;
		}
		uint32_t n = (uint32_t)rc, kept = 0;
		unsigned char *frames = r->frames;
		int64_t hi = r->floor_ns;
		for (uint32_t j = 0; j < n; j++) {
			unsigned char *f = frames + (size_t)j * r->stride;
			int64_t t;
			memcpy(&t, f + r->t_ns_offset, sizeof t);
			if (t <= r->late_ns) {
				r->late++;
				continue;
			}
			r->last_ns = t;
			if (t <= hi) {
				r->out_of_order++;
				continue;
			}
			hi = t;
			if (kept != j)
				memmove(frames + (size_t)kept * r->stride, f, r->stride);
			r->t_ns[kept++] = t;
		}
		r->n = kept;
		r->read = n;
		r->full = n == r->room;
		if (r->append && kept) {
			r->frames = frames + (size_t)kept * r->stride;
			r->t_ns += kept;
			r->room -= kept;
			r->floor_ns = hi;
		}
		if (summary)
			drain_summary(r, summary + i * SHADOWD_RING_DRAIN_SUMMARY);
	}
	return 0;
}
