/*
 * fields.h: reading frames in place, shared by the model-window sampler (window.c) and the
 * trigger evaluator (trig.c): a record field as float64 (numpy's astype(float64)), and the
 * zero-order hold's index (the last frame at or before a time). Field types are
 * SHADOWD_WINDOW_* (include/shadowd/window.h).
 */
#ifndef SHADOWD_FIELDS_H
#define SHADOWD_FIELDS_H

#include "shadowd/window.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define HOLD_WALK_STEPS 8 /* frames walked forward from the previous answer before bisecting */

static inline size_t type_size(int type)
{
	switch (type) {
	case SHADOWD_WINDOW_F8:
		return 8;
	case SHADOWD_WINDOW_F4:
	case SHADOWD_WINDOW_U4:
	case SHADOWD_WINDOW_I4:
		return 4;
	case SHADOWD_WINDOW_U2:
	case SHADOWD_WINDOW_I2:
		return 2;
	case SHADOWD_WINDOW_U1:
	case SHADOWD_WINDOW_I1:
		return 1;
	default:
		return 0;
	}
}

#define LOAD_AS_DOUBLE(T)                  \
	do {                               \
		T v_;                      \
		memcpy(&v_, p, sizeof v_); \
		return (double)v_;         \
	} while (0)

/* The field as numpy's astype(float64) gives it (memcpy: records need not be aligned). */
static inline double field_value(const uint8_t *p, int type)
{
	switch (type) {
	case SHADOWD_WINDOW_F4:
		LOAD_AS_DOUBLE(float);
	case SHADOWD_WINDOW_F8:
		LOAD_AS_DOUBLE(double);
	case SHADOWD_WINDOW_U1:
		LOAD_AS_DOUBLE(uint8_t);
	case SHADOWD_WINDOW_I1:
		LOAD_AS_DOUBLE(int8_t);
	case SHADOWD_WINDOW_U2:
		LOAD_AS_DOUBLE(uint16_t);
	case SHADOWD_WINDOW_I2:
		LOAD_AS_DOUBLE(int16_t);
	case SHADOWD_WINDOW_U4:
		LOAD_AS_DOUBLE(uint32_t);
	default:
		LOAD_AS_DOUBLE(int32_t);
	}
}

/* The last j in [lo, hi) with t_ns[j] <= tq, given lo == -1 or t_ns[lo] <= tq, and hi == n or
 * t_ns[hi] > tq. */
static inline ptrdiff_t bisect_ns(const int64_t *t_ns, ptrdiff_t lo, ptrdiff_t hi, int64_t tq)
{
	while (hi - lo > 1) {
		ptrdiff_t mid = lo + (hi - lo) / 2;
		if (t_ns[mid] <= tq)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/* The last frame at or before tq (-1: none), from the previous answer: a few steps forward
 * when the queries ascend, a bisection when they went back (overlapping windows) or jump far. */
static inline ptrdiff_t hold_index(const int64_t *t_ns, ptrdiff_t n, int64_t tq, ptrdiff_t last)
{
	if (last >= 0 && t_ns[last] > tq)
		return bisect_ns(t_ns, -1, last, tq);
	for (int step = 0; last + 1 < n && t_ns[last + 1] <= tq; step++) {
		if (step == HOLD_WALK_STEPS)
			return bisect_ns(t_ns, last + 1, n, tq);
		last++;
	}
	return last;
}

#endif
