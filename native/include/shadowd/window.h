/*
 * shadowd/window.h: a model's input window in one call -- the signals of one topic sampled at
 * query instants (ShadowCore's model requests). shadowd/core/align.py (`sample`,
 * `sample_many`) is the reference: the same values, bit for bit.
 *
 * Inputs: n frames of a topic, t_ns ascending (equal times allowed), the frames themselves as
 * records (frames + i * frame_stride; numpy's structured array), and n_fields fields to sample:
 * field_offset[f] (bytes into a record), field_type[f] (SHADOWD_WINDOW_F4 .. _I4, the field's
 * numpy type), linear[f] (1: np.interp on float64 times relative to t_ns[0], NaN before the
 * first and after the last frame; 0: zero-order hold, the last frame at or before the query,
 * NaN before the first). n_query query instants query_base_ns + query_ns[q], ascending (a
 * request's window: its tick as the base, the window's offsets as query_ns; several windows:
 * base 0 and the instants themselves).
 * Output: out[q * out_stride + out_col[f]] = the value as float32 (NaN unknown).
 * RETURN the number of output values that are NaN (0: every window complete), -EINVAL (a NULL
 * pointer with a non-zero count, an unknown field type, a field past the record), -E2BIG (more
 * than SHADOWD_WINDOW_MAX_FIELDS fields).
 * Pure function: no allocation, no globals; thread-safe.
 *
 * Everything between cffi-begin and cffi-end is also the cffi cdef (native/build_ffi.py).
 */
#ifndef SHADOWD_WINDOW_H
#define SHADOWD_WINDOW_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* cffi-begin */
#define SHADOWD_WINDOW_ABI_VERSION 2
#define SHADOWD_WINDOW_MAX_FIELDS 64
#define SHADOWD_WINDOW_F4 0
#define SHADOWD_WINDOW_F8 1
#define SHADOWD_WINDOW_U1 2
#define SHADOWD_WINDOW_I1 3
#define SHADOWD_WINDOW_U2 4
#define SHADOWD_WINDOW_I2 5
#define SHADOWD_WINDOW_U4 6
#define SHADOWD_WINDOW_I4 7

int shadowd_window_abi_version(void);
int shadowd_window_sample(size_t n, const int64_t *t_ns, const uint8_t *frames, size_t frame_stride,
			  size_t n_fields, const size_t *field_offset, const int *field_type, const int *linear,
			  size_t n_query, int64_t query_base_ns, const int64_t *query_ns, float *out,
			  size_t out_stride, const size_t *out_col);
/* cffi-end */

#ifdef __cplusplus
}
#endif

#endif
