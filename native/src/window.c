/*
 * window.c: a model's input window in one call (see include/shadowd/window.h). The numpy
 * reference (shadowd/core/align.py) converts each field to float64 and calls np.interp on
 * times relative to the first frame, or takes the last frame at or before the query; this
 * does the same per value (interp.h), reading the fields in place.
 */
#include "shadowd/window.h"
#include "interp.h"

#include <errno.h>
#include <string.h>

int shadowd_window_abi_version(void)
{
	return SHADOWD_WINDOW_ABI_VERSION;
}

static size_t type_size(int type)
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

/* interp.h's `interp` with y read from the records. */
static double linear_at(const struct hist *h, const uint8_t *frames, size_t stride, size_t off, int type,
			const struct at *a)
{
	const ptrdiff_t j = a->j;
	if (j < 0 || j >= h->n)
		return NAN;
	const double y0 = field_value(frames + (size_t)j * stride + off, type);
	if (j == h->n - 1 || a->x0 == a->x)
		return y0;
	return interp_between(a, y0, field_value(frames + (size_t)(j + 1) * stride + off, type));
}

/* The last j in [lo, hi) with t_ns[j] <= tq, given lo == -1 or t_ns[lo] <= tq, and hi == n or
 * t_ns[hi] > tq. */
static ptrdiff_t bisect_ns(const int64_t *t_ns, ptrdiff_t lo, ptrdiff_t hi, int64_t tq)
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
static ptrdiff_t hold_index(const int64_t *t_ns, ptrdiff_t n, int64_t tq, ptrdiff_t last)
{
	if (last >= 0 && t_ns[last] > tq)
		return bisect_ns(t_ns, -1, last, tq);
	for (int step = 0; last + 1 < n && t_ns[last + 1] <= tq; step++) {
		if (step == WALK_STEPS)
			return bisect_ns(t_ns, last + 1, n, tq);
		last++;
	}
	return last;
}

int shadowd_window_sample(size_t n, const int64_t *t_ns, const uint8_t *frames, size_t frame_stride,
			  size_t n_fields, const size_t *field_offset, const int *field_type, const int *linear,
			  size_t n_query, int64_t query_base_ns, const int64_t *query_ns, float *out,
			  size_t out_stride, const size_t *out_col)
{
	if (n_fields > SHADOWD_WINDOW_MAX_FIELDS)
		return -E2BIG;
	if ((n > 0 && (t_ns == NULL || frames == NULL)) || (n_fields > 0 && (field_offset == NULL ||
	    field_type == NULL || linear == NULL || out_col == NULL)) || (n_query > 0 && n_fields > 0 &&
	    (query_ns == NULL || out == NULL)))
		return -EINVAL;
	for (size_t f = 0; f < n_fields; f++) {
		size_t size = type_size(field_type[f]);
		if (size == 0 || field_offset[f] + size > frame_stride || out_col[f] >= out_stride)
			return -EINVAL;
	}
	if (n_fields == 0 || n_query == 0)
		return 0;
	struct hist h = {t_ns, (ptrdiff_t)n, n > 0 ? t_ns[0] : 0};
	struct at a = {-1, 0.0, 0.0, 0.0};
	ptrdiff_t last = -1; /* zero-order hold: the last frame at or before the query */
	int unknown = 0;
	for (size_t q = 0; q < n_query; q++) {
		const int64_t tq = query_base_ns + query_ns[q];
		locate(&h, rel_ns(&h, tq), &a);
		last = hold_index(t_ns, (ptrdiff_t)n, tq, last);
		float *row = out + q * out_stride;
		for (size_t f = 0; f < n_fields; f++) {
			double v;
			if (linear[f])
				v = linear_at(&h, frames, frame_stride, field_offset[f], field_type[f], &a);
			else
				v = last >= 0 ? field_value(frames + (size_t)last * frame_stride + field_offset[f],
							    field_type[f])
					      : NAN;
			row[out_col[f]] = (float)v;
			unknown += v != v;
		}
	}
	return unknown;
}
