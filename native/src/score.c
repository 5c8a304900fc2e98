/*
 * score.c: the divergence metrics of a batch of predictions (see include/shadowd/score.h for
 * the inputs, the outputs and the return codes). Mirrors the numpy reference
 * (shadowd/core/divergence.py `_score_columns_numpy`) operation by operation:
 *   - realized values: np.interp's bracket and formula on float64 times relative to the
 *     first history sample (the same integers the reference converts);
 *   - means over the offsets: numpy's pairwise summation, then one division;
 *   - realized path: the trapezoid running sums of heading, then x (cos) and y (sin), in
 *     the reference's order, streamed step by step (no (P, n+1) arrays) and sampled at the
 *     offsets as the reference does (x[lo] * (1 - frac) + x[lo + 1] * frac).
 * Build with -ffp-contract=off (Makefile, build_ffi.py): a fused multiply-add would round
 * differently from numpy. One pass per prediction; queries within a prediction ascend, so
 * each bracket starts from the previous one.
 */
#include "shadowd/score.h"
#include "interp.h"

#include <errno.h>
#include <math.h>

#define PW_BLOCKSIZE 128 /* numpy's pairwise summation block (loops_utils.h.src) */
#define RAD_TO_DEG (180.0 / 3.141592653589793) /* 180 / math.pi, as Python rounds it */

#define ALL_FLAGS (SHADOWD_SCORE_STEER | SHADOWD_SCORE_ACCEL | SHADOWD_SCORE_TRAJ)

enum {
	COL_DIVERGENCE,
	COL_STEER_ERR_DEG,
	COL_STEER_ERR_NORM,
	COL_ACCEL_ERR_MPS2,
	COL_ACCEL_ERR_NORM,
	COL_ADE_M,
	COL_FDE_M,
	COL_TRAJ_ERR_NORM,
	COL_SPEED_MPS,
};

int shadowd_score_abi_version(void)
{
	return SHADOWD_SCORE_ABI_VERSION;
}

/* numpy's pairwise summation of a contiguous float64 run (DOUBLE_pairwise_sum). */
static double pairwise_sum(const double *a, size_t n)
{
	if (n < 8) {
		double res = 0.0;
		for (size_t i = 0; i < n; i++)
			res += a[i];
		return res;
	}
	if (n <= PW_BLOCKSIZE) {
		double r[8];
		for (int k = 0; k < 8; k++)
			r[k] = a[k];
		size_t i;
		for (i = 8; i < n - (n % 8); i += 8)
			for (int k = 0; k < 8; k++)
				r[k] += a[i + k];
		double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
		for (; i < n; i++)
			res += a[i];
		return res;
	}
	size_t n2 = n / 2;
	n2 -= n2 % 8;
	return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

/* ndarray.mean along a row: add.reduce from its identity, then one true division. */
static inline double mean(const double *a, size_t n)
{
	return (0.0 + pairwise_sum(a, n)) / (double)n;
}

/* np.maximum / np.minimum of floats (numpy's _NPY_MAX / _NPY_MIN): a NaN on either side wins */
static inline double max_nan(double a, double b)
{
	return isnan(a) ? a : a > b ? a : b;
}

static inline double min_nan(double a, double b)
{
	return isnan(a) ? a : a < b ? a : b;
}

/* divergence.steer_tolerance_deg: np.clip is minimum(maximum(x, lo), hi) */
static double steer_tolerance_deg(double speed_mps, const struct shadowd_score_config *cfg)
{
	const double v = max_nan(speed_mps, 0.1);
	const double tol = cfg->lat_accel_tol_mps2 * cfg->wheelbase_m * cfg->steer_ratio / (v * v) * RAD_TO_DEG;
	return min_nan(max_nan(tol, cfg->steer_tol_min_deg), cfg->steer_tol_max_deg);
}

struct batch {
	struct hist h;
	const double *speed, *steer, *accel, *yaw;
	size_t n_pred, n_off;
	const int64_t *t0_ns, *offsets_ns;
	const double *pred_steer, *pred_accel, *pred_xy;
	unsigned flags;
	const int64_t *tau_ns, *lo;
	const double *half_dt, *frac;
	const struct shadowd_score_config *cfg;
	double *out;
};

static inline void put(const struct batch *b, int col, size_t p, double v)
{
	b->out[(size_t)col * b->n_pred + p] = v;
}

/* The realized path after t0 sampled at the offsets, compared with the predicted one:
 * d[k] (displacement per offset) and the distance travelled at the last offset. *start: the
 * bracket of the previous prediction's t0 on entry (a search hint), of this one's on return. */
static double path_errors(const struct batch *b, size_t p, int64_t t0, double *d, ptrdiff_t *start)
{
	const struct hist *h = &b->h;
	const double *pxy = b->pred_xy + p * b->n_off * 2;
	const size_t last = (size_t)b->lo[b->n_off - 1] + 1; /* the grid ends at the last offset */
	struct at a = {.j = *start};
	locate(h, rel_ns(h, add_wrap(t0, b->tau_ns[0])), &a);
	*start = a.j;
	const double v0 = interp(h, b->speed, &a);
	double w_prev = interp(h, b->yaw, &a);
	double heading = 0.0, x = 0.0, y = 0.0;
	double vx_prev = cos(heading) * v0, vy_prev = sin(heading) * v0;
	double travelled = NAN;
	size_t k = 0;
	for (size_t i = 1; i <= last; i++) {
		locate(h, rel_ns(h, add_wrap(t0, b->tau_ns[i])), &a);
		const double v = interp(h, b->speed, &a);
		const double w = interp(h, b->yaw, &a);
		const double half_dt = b->half_dt[i - 1];
		heading = heading + (w + w_prev) * half_dt;
		const double vx = cos(heading) * v, vy = sin(heading) * v;
		const double x_i = x + (vx + vx_prev) * half_dt;
		const double y_i = y + (vy + vy_prev) * half_dt;
		for (; k < b->n_off && (size_t)b->lo[k] + 1 == i; k++) {
			const double f = b->frac[k];
			const double xs = x * (1 - f) + x_i * f, ys = y * (1 - f) + y_i * f;
			const double dx = pxy[2 * k] - xs, dy = pxy[2 * k + 1] - ys;
			d[k] = sqrt(dx * dx + dy * dy);
			if (k == b->n_off - 1)
				travelled = sqrt(xs * xs + ys * ys);
		}
		w_prev = w;
		vx_prev = vx;
		vy_prev = vy;
		x = x_i;
		y = y_i;
	}
	return travelled;
}

/* Score prediction p into its column of out. start[0] / start[1]: the brackets of the previous
 * prediction's first offset / t0 (search hints; predictions mostly come in time order). */
static void score_one(const struct batch *b, size_t p, ptrdiff_t start[2])
{
	const struct shadowd_score_config *cfg = b->cfg;
	const struct hist *h = &b->h;
	const size_t n_off = b->n_off;
	const int64_t t0 = b->t0_ns[p];
	double speed[SHADOWD_SCORE_MAX_OFFSETS], steer_err[SHADOWD_SCORE_MAX_OFFSETS];
	double accel_err[SHADOWD_SCORE_MAX_OFFSETS], d[SHADOWD_SCORE_MAX_OFFSETS];
	struct at a = {.j = start[0]};
	for (size_t k = 0; k < n_off; k++) {
		locate(h, rel_ns(h, add_wrap(t0, b->offsets_ns[k])), &a);
		if (k == 0)
			start[0] = a.j;
		speed[k] = interp(h, b->speed, &a);
		if (b->flags & SHADOWD_SCORE_STEER)
			steer_err[k] = fabs(b->pred_steer[p * n_off + k] - interp(h, b->steer, &a));
		if (b->flags & SHADOWD_SCORE_ACCEL)
			accel_err[k] = fabs(b->pred_accel[p * n_off + k] - interp(h, b->accel, &a));
	}
	const double v_mean = mean(speed, n_off);
	double norms[3];
	int n_norms = 0;
	for (int c = COL_DIVERGENCE; c <= COL_TRAJ_ERR_NORM; c++)
		put(b, c, p, NAN);
	put(b, COL_SPEED_MPS, p, v_mean);
	if (b->flags & SHADOWD_SCORE_STEER) {
		const double err = mean(steer_err, n_off);
		norms[n_norms++] = err / steer_tolerance_deg(v_mean, cfg);
		put(b, COL_STEER_ERR_DEG, p, err);
		put(b, COL_STEER_ERR_NORM, p, norms[n_norms - 1]);
	}
	if (b->flags & SHADOWD_SCORE_ACCEL) {
		const double err = mean(accel_err, n_off);
		norms[n_norms++] = err / cfg->accel_tol_mps2;
		put(b, COL_ACCEL_ERR_MPS2, p, err);
		put(b, COL_ACCEL_ERR_NORM, p, norms[n_norms - 1]);
	}
	if (b->flags & SHADOWD_SCORE_TRAJ) {
		const double travelled = path_errors(b, p, t0, d, &start[1]);
		const double ade = mean(d, n_off);
		norms[n_norms++] = ade / (cfg->pos_tol_m + cfg->pos_tol_frac * travelled);
		put(b, COL_ADE_M, p, ade);
		put(b, COL_FDE_M, p, d[n_off - 1]);
		put(b, COL_TRAJ_ERR_NORM, p, norms[n_norms - 1]);
	}
	/* root mean square of the known normalized terms; NaN when none is known */
	double total = 0.0;
	int known = 0;
	for (int i = 0; i < n_norms; i++) {
		if (!isnan(norms[i])) {
			total += norms[i] * norms[i];
			known++;
		}
	}
	if (known > 0)
		put(b, COL_DIVERGENCE, p, sqrt(total / known));
}

int shadowd_score_batch(size_t n_hist, const int64_t *t_hist_ns, const double *speed_mps,
			const double *steer_angle_deg, const double *accel_long_mps2,
			const double *yaw_rate_rps, size_t n_pred, const int64_t *t0_ns, size_t n_off,
			const int64_t *offsets_ns, const double *pred_steer_deg,
			const double *pred_accel_mps2, const double *pred_xy_m, unsigned flags,
			size_t n_steps, const int64_t *tau_ns, const double *half_dt_s,
			const int64_t *lo, const double *frac,
			const struct shadowd_score_config *cfg, double *out)
{
	if ((n_hist > 0 && (t_hist_ns == NULL || speed_mps == NULL)) || (n_pred > 0 && t0_ns == NULL) ||
	    offsets_ns == NULL || cfg == NULL || out == NULL || n_off == 0 || (flags & ~ALL_FLAGS) ||
	    n_hist > PTRDIFF_MAX)
		return -EINVAL;
	if (n_off > SHADOWD_SCORE_MAX_OFFSETS)
		return -E2BIG;
	if ((flags & SHADOWD_SCORE_STEER) && ((n_hist > 0 && steer_angle_deg == NULL) || pred_steer_deg == NULL))
		return -EINVAL;
	if ((flags & SHADOWD_SCORE_ACCEL) && ((n_hist > 0 && accel_long_mps2 == NULL) || pred_accel_mps2 == NULL))
		return -EINVAL;
	if (flags & SHADOWD_SCORE_TRAJ) {
		if ((n_hist > 0 && yaw_rate_rps == NULL) || pred_xy_m == NULL || n_steps == 0 || tau_ns == NULL ||
		    half_dt_s == NULL || lo == NULL || frac == NULL)
			return -EINVAL;
		for (size_t k = 0; k < n_off; k++)
			if (lo[k] < 0 || (uint64_t)lo[k] >= n_steps || (k > 0 && lo[k] < lo[k - 1]))
				return -EINVAL;
	}
	const struct batch b = {
		.h = {.t_ns = t_hist_ns, .n = (ptrdiff_t)n_hist, .base_ns = n_hist > 0 ? t_hist_ns[0] : 0},
		.speed = speed_mps, .steer = steer_angle_deg, .accel = accel_long_mps2, .yaw = yaw_rate_rps,
		.n_pred = n_pred, .n_off = n_off, .t0_ns = t0_ns, .offsets_ns = offsets_ns,
		.pred_steer = pred_steer_deg, .pred_accel = pred_accel_mps2, .pred_xy = pred_xy_m,
		.flags = flags, .tau_ns = tau_ns, .lo = lo, .half_dt = half_dt_s, .frac = frac, .cfg = cfg,
		.out = out,
	};
	ptrdiff_t start[2] = {-1, -1};
	for (size_t p = 0; p < n_pred; p++)
		score_one(&b, p, start);
	return 0;
}
