/*
 * shadowd/score.h: the divergence metrics of a batch of predictions in one call (the
 * scorer's kernel). shadowd/core/divergence.py `_score_columns_numpy` is the reference
 * implementation and docs/divergence.md the definition; this computes the same columns with
 * the same operations in the same order, so the results agree to rounding (libm's cos/sin
 * against numpy's) with NaN in the same places.
 *
 * Inputs:
 *   history: n_hist rows, t_hist_ns ascending (equal times allowed); the columns speed_mps
 *     (required), steer_angle_deg, accel_long_mps2, yaw_rate_rps (each NULL when absent;
 *     every history pointer may be NULL when n_hist is 0).
 *     A realized value is np.interp's linear interpolation on the float64 times relative to
 *     t_hist_ns[0] (the left sample of a bracket is the last one at or before the query; a
 *     query on the last sample returns it; NaN before the first or after the last sample;
 *     numpy's rule when the slope formula gives NaN). n_hist may be 0 (every value NaN).
 *   predictions: n_pred instants t0_ns (any order, time order is fastest; NULL when n_pred
 *     is 0); n_off horizon offsets offsets_ns (1..SHADOWD_SCORE_MAX_OFFSETS, so that the
 *     per-prediction scratch fits on the stack); predicted controls pred_steer_deg and
 *     pred_accel_mps2 (n_pred * n_off, row-major, NaN = not predicted) and the predicted
 *     trajectory pred_xy_m (n_pred * n_off * 2, x forward, y left), each NULL when not scored.
 *   flags: which terms to compute (SHADOWD_SCORE_STEER / _ACCEL / _TRAJ); a term not asked
 *     for leaves its columns NaN. STEER needs steer_angle_deg and pred_steer_deg, ACCEL
 *     accel_long_mps2 and pred_accel_mps2, TRAJ yaw_rate_rps, pred_xy_m and the grid.
 *   integration grid of the realized path (the reference's `_integration_grid`): n_steps
 *     trapezoid steps at tau_ns (n_steps + 1 instants after t0) with half widths half_dt_s
 *     (n_steps, seconds); offset k lies between grid points lo[k] and lo[k] + 1 at fraction
 *     frac[k]. lo must be non-decreasing (ascending offsets) and within 0..n_steps-1.
 *   cfg: the ScorerConfig numbers.
 *
 * Output: out, column-major SHADOWD_SCORE_COLUMNS x n_pred (out[c * n_pred + p]): the
 * columns of METRIC_NAMES in order (divergence, steer_err_deg, steer_err_norm,
 * accel_err_mps2, accel_err_norm, ade_m, fde_m, traj_err_norm), then realized_speed_mps
 * (mean realized speed over the offsets). Means over the offsets use numpy's pairwise sum.
 *
 * RETURN: 0, or a negative errno (nothing written):
 *   -EINVAL  a NULL pointer that is needed (above; cfg and out always), n_off 0, n_steps 0
 *            with TRAJ, lo out of range or decreasing, an unknown flag bit
 *   -E2BIG   n_off over SHADOWD_SCORE_MAX_OFFSETS (the caller scores such a batch in numpy)
 * Pure function: no allocation (32 KiB of stack), no globals, no I/O; thread-safe.
 *
 * Everything between cffi-begin and cffi-end is also the cffi cdef (native/build_ffi.py).
 */
#ifndef SHADOWD_SCORE_H
#define SHADOWD_SCORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* cffi-begin */
#define SHADOWD_SCORE_ABI_VERSION 1
#define SHADOWD_SCORE_MAX_OFFSETS 1024
#define SHADOWD_SCORE_COLUMNS 9
#define SHADOWD_SCORE_STEER 1
#define SHADOWD_SCORE_ACCEL 2
#define SHADOWD_SCORE_TRAJ 4

struct shadowd_score_config {
	double steer_ratio;
	double wheelbase_m;
	double lat_accel_tol_mps2;
	double steer_tol_min_deg;
	double steer_tol_max_deg;
	double accel_tol_mps2;
	double pos_tol_m;
	double pos_tol_frac;
};

int shadowd_score_abi_version(void);
int shadowd_score_batch(size_t n_hist, const int64_t *t_hist_ns, const double *speed_mps,
			const double *steer_angle_deg, const double *accel_long_mps2,
			const double *yaw_rate_rps, size_t n_pred, const int64_t *t0_ns, size_t n_off,
			const int64_t *offsets_ns, const double *pred_steer_deg,
			const double *pred_accel_mps2, const double *pred_xy_m, unsigned flags,
			size_t n_steps, const int64_t *tau_ns, const double *half_dt_s,
			const int64_t *lo, const double *frac,
			const struct shadowd_score_config *cfg, double *out);
/* cffi-end */

#ifdef __cplusplus
}
#endif

#endif /* SHADOWD_SCORE_H */
