/*
 * window.c: a model's input window in one call (see include/shadowd/window.h). The numpy
 * reference (shadowd/core/align.py) converts each field to float64 and calls np.interp on
 * times relative to the first frame, or takes the last frame at or before the query; this
 * does the same per value (interp.h), reading the fields in place.
 */
#include "shadowd/window.h"
#include "fields.h"
#include "interp.h"

#include <errno.h>
#include <string.h>

int shadowd_window_abi_version(void)
{
	return SHADOWD_WINDOW_ABI_VERSION;
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
