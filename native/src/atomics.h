/*
 * atomics.h: the only file in native/ that spells a memory order.
 *
 * Every access to a word another process or thread may touch concurrently goes through one
 * of these helpers (liburing's barrier.h role), so the ordering argument can be read in one
 * place and ported to ARM (the vehicle SoCs) without surprises. Definitions (C11 7.17):
 *
 *   RELEASE store: every load and store before it in program order is visible to a thread
 *                  that ACQUIRE-loads the value it stored (or a later value in that word).
 *   ACQUIRE load:  no load or store after it in program order can be hoisted above it.
 *   RELEASE fence then a relaxed store S: a thread whose acquire load reads S sees every
 *                  write before the fence. ACQUIRE fence after relaxed loads: they are
 *                  ordered before everything after the fence.
 *
 * The seqlock payload copies (copy_to_shared / copy_from_shared) are a data race by design
 * that the slot stamp detects and discards. ThreadSanitizer cannot model that, so TSan
 * builds copy word by word with relaxed atomics; production builds use memcpy. TSan also
 * does not model atomic_thread_fence (gcc's -Wtsan): the fences are still emitted, and since
 * every shared access of a TSan build is atomic no race report can hinge on one.
 */
#ifndef SHADOWD_ATOMICS_H
#define SHADOWD_ATOMICS_H

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#if defined(__SANITIZE_THREAD__)
#define SHADOWD_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SHADOWD_TSAN 1
#endif
#endif

typedef _Atomic uint64_t shadowd_a64;
typedef _Atomic uint32_t shadowd_a32;
typedef _Atomic int64_t shadowd_ai64;

static inline uint64_t load_acquire64(shadowd_a64 *p) { return atomic_load_explicit(p, memory_order_acquire); }
static inline uint64_t load_relaxed64(shadowd_a64 *p) { return atomic_load_explicit(p, memory_order_relaxed); }
static inline void store_release64(shadowd_a64 *p, uint64_t v) { atomic_store_explicit(p, v, memory_order_release); }
static inline void store_relaxed64(shadowd_a64 *p, uint64_t v) { atomic_store_explicit(p, v, memory_order_relaxed); }
static inline int64_t load_relaxed_i64(shadowd_ai64 *p) { return atomic_load_explicit(p, memory_order_relaxed); }
static inline void store_relaxed_i64(shadowd_ai64 *p, int64_t v) { atomic_store_explicit(p, v, memory_order_relaxed); }
static inline uint32_t load_relaxed32(shadowd_a32 *p) { return atomic_load_explicit(p, memory_order_relaxed); }
static inline void store_relaxed32(shadowd_a32 *p, uint32_t v) { atomic_store_explicit(p, v, memory_order_relaxed); }
static inline uint32_t load_seqcst32(shadowd_a32 *p) { return atomic_load_explicit(p, memory_order_seq_cst); }
static inline uint64_t load_seqcst64(shadowd_a64 *p) { return atomic_load_explicit(p, memory_order_seq_cst); }
static inline uint64_t exchange_seqcst64(shadowd_a64 *p, uint64_t v) { return atomic_exchange_explicit(p, v, memory_order_seq_cst); }
static inline uint32_t fetch_add_seqcst32(shadowd_a32 *p, uint32_t v) { return atomic_fetch_add_explicit(p, v, memory_order_seq_cst); }
static inline uint32_t fetch_sub_seqcst32(shadowd_a32 *p, uint32_t v) { return atomic_fetch_sub_explicit(p, v, memory_order_seq_cst); }
static inline uint32_t fetch_add_release32(shadowd_a32 *p, uint32_t v) { return atomic_fetch_add_explicit(p, v, memory_order_release); }

/* Compiler-only barrier: keeps the compiler from moving memory accesses across it; the CPU
 * may still reorder (used where membarrier() supplies the CPU side, see ring.c publish()). */
static inline void compiler_barrier(void) { atomic_signal_fence(memory_order_seq_cst); }

/* Orders the payload writes after it behind the (odd) slot stamp stored before it. */
static inline void fence_release(void) { atomic_thread_fence(memory_order_release); }
/* Orders the payload reads before it ahead of the slot stamp re-read after it. */
static inline void fence_acquire(void) { atomic_thread_fence(memory_order_acquire); }

/* A polite busy-wait step (x86 PAUSE / ARM YIELD): lets the sibling hyperthread run and
 * avoids a memory-order-violation flush when the polled line changes. Orders nothing. */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}

/* Copy a frame into a slot payload (both 8-byte aligned; n may be any size). */
static inline void copy_to_shared(void *dst, const void *src, size_t n)
{
#ifdef SHADOWD_TSAN
	unsigned char *d = dst;
	const unsigned char *s = src;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, s + i, 8);
		__atomic_store_n((uint64_t *)(void *)(d + i), w, __ATOMIC_RELAXED);
	}
	for (; i < n; i++)
		__atomic_store_n(d + i, s[i], __ATOMIC_RELAXED);
#else
	memcpy(dst, src, n);
#endif
}

/* Copy a slot payload out (src 8-byte aligned; dst any alignment). */
static inline void copy_from_shared(void *dst, const void *src, size_t n)
{
#ifdef SHADOWD_TSAN
	unsigned char *d = dst;
	const unsigned char *s = src;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w = __atomic_load_n((const uint64_t *)(const void *)(s + i), __ATOMIC_RELAXED);
		memcpy(d + i, &w, 8);
	}
	for (; i < n; i++)
		d[i] = __atomic_load_n(s + i, __ATOMIC_RELAXED);
#else
	memcpy(dst, src, n);
#endif
}

#endif /* SHADOWD_ATOMICS_H */
