/* The divergence kernel: on known motion (a straight line at constant speed, a circle at
 * constant yaw rate) every metric is what the closed form gives; np.interp's rules (exact
 * hits, NaN outside the history, equal times, the NaN fallbacks); NaN in, NaN out where the
 * reference puts it; a batch scores each prediction as if alone; bad arguments return their
 * documented errors and write nothing. tests/pipeline/test_divergence_native.py compares the
 * kernel with the numpy reference on the real drive and on generated batches. */
#include "helpers.h"
#include "shadowd/score.h"

#include <math.h>

#define MS 1000000LL
#define HIST 1000 /* 10 s at 100 Hz */
#define K 15      /* 0.1 .. 1.5 s, the reference model's horizon */
#define STEPS 150 /* 10 ms integration steps over 1.5 s */
#define MAX_P 8
#define ALL (SHADOWD_SCORE_STEER | SHADOWD_SCORE_ACCEL | SHADOWD_SCORE_TRAJ)

enum { DIV, STEER, STEER_NORM, ACCEL, ACCEL_NORM, ADE, FDE, TRAJ_NORM, SPEED };

static const struct shadowd_score_config CFG = {
	.steer_ratio = 16.0, .wheelbase_m = 2.7, .lat_accel_tol_mps2 = 0.5, .steer_tol_min_deg = 0.5,
	.steer_tol_max_deg = 45.0, .accel_tol_mps2 = 1.0, .pos_tol_m = 0.5, .pos_tol_frac = 0.05,
};

struct hist {
	int64_t t_ns[HIST];
	double speed[HIST], steer[HIST], accel[HIST], yaw[HIST];
};

struct batch {
	size_t n;
	int64_t t0_ns[MAX_P];
	double steer[MAX_P * K], accel[MAX_P * K], xy[MAX_P * K * 2];
	double out[SHADOWD_SCORE_COLUMNS * MAX_P];
};

/* The grid _integration_grid gives for 0.1 .. 1.5 s (offset k at the end of step 10k + 9). */
static int64_t offsets_ns[K], tau_ns[STEPS + 1], lo[K];
static double half_dt[STEPS], frac[K];

static void grid(void)
{
	for (int k = 0; k < K; k++) {
		offsets_ns[k] = (k + 1) * 100 * MS;
		lo[k] = 10 * (k + 1) - 1;
		frac[k] = 1.0;
	}
	for (int i = 0; i <= STEPS; i++)
		tau_ns[i] = i * 10 * MS;
	for (int i = 0; i < STEPS; i++)
		half_dt[i] = 0.005;
}

static void steady(struct hist *h, double speed, double yaw, double steer, double accel)
{
	for (int i = 0; i < HIST; i++) {
		h->t_ns[i] = 5000 * MS + i * 10 * MS; /* not at 0: times are taken relative to the first */
		h->speed[i] = speed;
		h->yaw[i] = yaw;
		h->steer[i] = steer;
		h->accel[i] = accel;
	}
}

static int score(const struct hist *h, struct batch *b, unsigned flags)
{
	for (size_t i = 0; i < sizeof(b->out) / sizeof(b->out[0]); i++)
		b->out[i] = -12345.0; /* garbage in: every column must be written */
	return shadowd_score_batch(HIST, h->t_ns, h->speed, h->steer, h->accel, h->yaw, b->n, b->t0_ns, K,
				   offsets_ns, b->steer, b->accel, b->xy, flags, STEPS, tau_ns, half_dt, lo, frac,
				   &CFG, b->out);
}

static double col(const struct batch *b, int c, size_t p)
{
	return b->out[(size_t)c * b->n + p];
}

#define CHECK_NEAR(a, b, tol)                                                                      \
	do {                                                                                       \
		double a_ = (a), b_ = (b);                                                         \
		if (!(fabs(a_ - b_) <= (tol))) {                                                   \
			fprintf(stderr, "%s:%d: %s == %.17g, expected %.17g (tol %g)\n", __FILE__,      \
				__LINE__, #a, a_, b_, (double)(tol));                              \
			exit(T_FAIL);                                                              \
		}                                                                                  \
	} while (0)

static double steer_tol_deg(double v)
{
	double tol = 0.5 * 2.7 * 16.0 / (v * v) * (180.0 / M_PI);
	return tol < 0.5 ? 0.5 : tol > 45.0 ? 45.0 : tol;
}

/* 20 m/s straight ahead; the prediction drives the same line, steers 1 deg off, brakes 0.5 off. */
static void straight_line(void)
{
	static struct hist h;
	static struct batch b = {.n = 1, .t0_ns = {7000 * MS}};
	steady(&h, 20.0, 0.0, 0.0, 0.0);
	for (int k = 0; k < K; k++) {
		b.steer[k] = 1.0;
		b.accel[k] = -0.5;
		b.xy[2 * k] = 20.0 * 0.1 * (k + 1);
		b.xy[2 * k + 1] = 0.0;
	}
	CHECK_EQ(score(&h, &b, ALL), 0);
	CHECK_NEAR(col(&b, SPEED, 0), 20.0, 0);
	CHECK_NEAR(col(&b, STEER, 0), 1.0, 0);
	CHECK_NEAR(col(&b, STEER_NORM, 0), 1.0 / steer_tol_deg(20.0), 1e-15);
	CHECK_NEAR(col(&b, ACCEL, 0), 0.5, 0);
	CHECK_NEAR(col(&b, ACCEL_NORM, 0), 0.5, 0);
	CHECK_NEAR(col(&b, ADE, 0), 0.0, 1e-9);
	CHECK_NEAR(col(&b, FDE, 0), 0.0, 1e-9);
	CHECK_NEAR(col(&b, TRAJ_NORM, 0), 0.0, 1e-9);
	const double s = col(&b, STEER_NORM, 0);
	CHECK_NEAR(col(&b, DIV, 0), sqrt((s * s + 0.25 + 0.0) / 3), 1e-9);
	/* 1 deg weighs ~40x more at 120 km/h than at 10 km/h (the tolerance's clip) */
	steady(&h, 120 / 3.6, 0.0, 0.0, 0.0);
	CHECK_EQ(score(&h, &b, SHADOWD_SCORE_STEER), 0);
	const double fast = col(&b, STEER_NORM, 0);
	steady(&h, 10 / 3.6, 0.0, 0.0, 0.0);
	CHECK_EQ(score(&h, &b, SHADOWD_SCORE_STEER), 0);
	CHECK_NEAR(col(&b, STEER_NORM, 0), 1.0 / 45.0, 1e-15);
	CHECK(fast > 30 * col(&b, STEER_NORM, 0));
	/* terms not asked for stay NaN and out of the score */
	CHECK(isnan(col(&b, ACCEL, 0)) && isnan(col(&b, ACCEL_NORM, 0)) && isnan(col(&b, ADE, 0)));
	CHECK(isnan(col(&b, FDE, 0)) && isnan(col(&b, TRAJ_NORM, 0)));
	CHECK_NEAR(col(&b, DIV, 0), col(&b, STEER_NORM, 0), 0);
}

/* 10 m/s at 0.2 rad/s: a left circle of radius 50 m; the prediction is that circle 1 m further
 * left, so every displacement is 1 m (up to the trapezoid's error). */
static void left_circle(void)
{
	static struct hist h;
	static struct batch b = {.n = 1, .t0_ns = {8000 * MS}};
	steady(&h, 10.0, 0.2, 0.0, 0.0);
	const double r = 10.0 / 0.2;
	for (int k = 0; k < K; k++) {
		const double th = 0.2 * 0.1 * (k + 1);
		b.xy[2 * k] = r * sin(th) - sin(th);
		b.xy[2 * k + 1] = r * (1 - cos(th)) + cos(th);
	}
	CHECK_EQ(score(&h, &b, SHADOWD_SCORE_TRAJ), 0);
	CHECK_NEAR(col(&b, ADE, 0), 1.0, 1e-4);
	CHECK_NEAR(col(&b, FDE, 0), 1.0, 1e-4);
	const double chord = 2 * r * sin(0.2 * 1.5 / 2);
	CHECK_NEAR(col(&b, TRAJ_NORM, 0), col(&b, ADE, 0) / (0.5 + 0.05 * chord), 1e-6);
	CHECK_NEAR(col(&b, DIV, 0), col(&b, TRAJ_NORM, 0), 0);
	CHECK(isnan(col(&b, STEER, 0)) && isnan(col(&b, ACCEL, 0)));
}

/* np.interp's value at one query (K = 1 offset: the mean realized speed is the value). */
static double at(size_t n, const int64_t *t, const double *y, int64_t q_ns)
{
	const int64_t off = 0;
	double out[SHADOWD_SCORE_COLUMNS];
	CHECK_EQ(shadowd_score_batch(n, t, y, NULL, NULL, NULL, 1, &q_ns, 1, &off, NULL, NULL, NULL, 0, 0, NULL,
				     NULL, NULL, NULL, &CFG, out),
		 0);
	CHECK(isnan(out[DIV]) && isnan(out[STEER]) && isnan(out[ADE]));
	return out[SPEED];
}

static void interpolation_rules(void)
{
	const int64_t t[5] = {100, 110, 110, 120, 130}; /* an equal pair: the later sample brackets */
	const double y[5] = {0.0, 1.0, 5.0, 6.0, 8.0};
	CHECK(isnan(at(5, t, y, 99)));          /* before the first sample */
	CHECK_NEAR(at(5, t, y, 100), 0.0, 0);   /* on the first */
	CHECK_NEAR(at(5, t, y, 105), 0.5, 0);
	CHECK_NEAR(at(5, t, y, 110), 5.0, 0);   /* the last of the equal pair */
	CHECK_NEAR(at(5, t, y, 115), 5.5, 0);
	CHECK_NEAR(at(5, t, y, 130), 8.0, 0);   /* on the last */
	CHECK(isnan(at(5, t, y, 131)));         /* after the last: the future is unknown */
	CHECK(isnan(at(0, t, y, 100)));         /* no history */
	CHECK_NEAR(at(1, t, y, 100), 0.0, 0);   /* one sample: only its own instant */
	CHECK(isnan(at(1, t, y, 101)));
	const double inf[3] = {0.0, INFINITY, INFINITY};
	CHECK(isinf(at(3, t + 2, inf, 115)));   /* slope inf */
	CHECK(isinf(at(3, t + 2, inf, 125)));   /* inf - inf: numpy's equal-neighbours fallback */
	const double gap[3] = {1.0, NAN, 3.0};
	CHECK(isnan(at(3, t + 2, gap, 115)));   /* a NaN sample spoils both its intervals */
	CHECK(isnan(at(3, t + 2, gap, 120)));
	CHECK_NEAR(at(3, t + 2, gap, 130), 3.0, 0); /* but not an exact hit on its neighbour */
	/* queries far apart (galloping) and going back (a fresh search) */
	static int64_t tl[HIST];
	static double yl[HIST];
	for (int i = 0; i < HIST; i++) {
		tl[i] = i * 10 * MS;
		yl[i] = i;
	}
	const int64_t q[3] = {9995 * MS, 5 * MS, 4321 * MS};
	const int64_t off = 0;
	double out[SHADOWD_SCORE_COLUMNS * 3];
	CHECK_EQ(shadowd_score_batch(HIST, tl, yl, NULL, NULL, NULL, 3, q, 1, &off, NULL, NULL, NULL, 0, 0, NULL,
				     NULL, NULL, NULL, &CFG, out),
		 0);
	CHECK(isnan(out[SPEED * 3 + 0]));
	CHECK_NEAR(out[SPEED * 3 + 1], 0.5, 0);
	CHECK_NEAR(out[SPEED * 3 + 2], 432.1, 1e-12);
}

/* NaN where the reference has it: a horizon past the history, a NaN prediction, a NaN sample. */
static void nan_handling(void)
{
	static struct hist h;
	static struct batch b = {.n = 5};
	steady(&h, 15.0, 0.05, 2.0, 0.3);
	const int64_t last = h.t_ns[HIST - 1];
	b.t0_ns[0] = last - 1500 * MS;     /* its last offset is the last sample: scored */
	b.t0_ns[1] = last - 1490 * MS;     /* its last offset is 10 ms past the history */
	b.t0_ns[2] = h.t_ns[0] - 10 * MS; /* its path starts before the history */
	b.t0_ns[3] = h.t_ns[100];         /* a NaN in its predicted steering */
	b.t0_ns[4] = h.t_ns[300];         /* a NaN yaw-rate sample inside its horizon */
	for (size_t p = 0; p < b.n; p++)
		for (int k = 0; k < K; k++) {
			b.steer[p * K + k] = 2.5;
			b.accel[p * K + k] = 0.3;
			b.xy[(p * K + k) * 2] = 15.0 * 0.1 * (k + 1);
			b.xy[(p * K + k) * 2 + 1] = 0.0;
		}
	b.steer[3 * K + 7] = NAN;
	h.yaw[350] = NAN;
	CHECK_EQ(score(&h, &b, ALL), 0);
	for (int c = DIV; c <= SPEED; c++)
		CHECK(!isnan(col(&b, c, 0)));
	CHECK(isnan(col(&b, SPEED, 1)) && isnan(col(&b, STEER, 1)) && isnan(col(&b, ADE, 1)));
	CHECK(isnan(col(&b, DIV, 1))); /* every term unknown */
	CHECK(isnan(col(&b, ADE, 2)) && isnan(col(&b, FDE, 2)) && isnan(col(&b, TRAJ_NORM, 2)));
	CHECK_NEAR(col(&b, SPEED, 2), 15.0, 0); /* the offsets are all inside */
	CHECK_NEAR(col(&b, DIV, 2), sqrt(col(&b, STEER_NORM, 2) * col(&b, STEER_NORM, 2) / 2), 1e-15);
	CHECK(isnan(col(&b, STEER, 3)) && isnan(col(&b, STEER_NORM, 3)));
	CHECK_NEAR(col(&b, ACCEL, 3), 0.0, 0);
	CHECK_NEAR(col(&b, SPEED, 3), 15.0, 0);
	/* the divergence is the RMS of the terms still known: accel 0 and the trajectory */
	CHECK_NEAR(col(&b, DIV, 3), sqrt(col(&b, TRAJ_NORM, 3) * col(&b, TRAJ_NORM, 3) / 2), 1e-15);
	CHECK(isnan(col(&b, ADE, 4)) && isnan(col(&b, FDE, 4)) && isnan(col(&b, TRAJ_NORM, 4)));
	CHECK_NEAR(col(&b, STEER, 4), 0.5, 0);
	CHECK_NEAR(col(&b, DIV, 4), sqrt(col(&b, STEER_NORM, 4) * col(&b, STEER_NORM, 4) / 2), 1e-15);
	/* no term asked for: only the realized speed */
	CHECK_EQ(score(&h, &b, 0), 0);
	CHECK(isnan(col(&b, DIV, 0)) && isnan(col(&b, STEER, 0)) && isnan(col(&b, TRAJ_NORM, 0)));
	CHECK_NEAR(col(&b, SPEED, 0), 15.0, 0);
}

/* Each prediction's columns are the same whatever else is in its batch, in any order. */
static void batch_independence(void)
{
	static struct hist h;
	static struct batch all = {.n = MAX_P}, one = {.n = 1};
	steady(&h, 0, 0, 0, 0);
	for (int i = 0; i < HIST; i++) {
		h.speed[i] = 12.0 + sin(i * 0.013) * 3;
		h.yaw[i] = 0.1 * sin(i * 0.021);
		h.steer[i] = 20.0 * sin(i * 0.017);
		h.accel[i] = cos(i * 0.05);
	}
	const int order[MAX_P] = {3, 0, 7, 1, 6, 2, 5, 4}; /* t0 goes back and forth */
	for (size_t p = 0; p < MAX_P; p++) {
		all.t0_ns[p] = h.t_ns[50] + order[p] * 950 * MS + 3 * MS; /* between samples */
		for (int k = 0; k < K; k++) {
			all.steer[p * K + k] = 0.5 * (double)p - k;
			all.accel[p * K + k] = 0.1 * k;
			all.xy[(p * K + k) * 2] = 1.2 * k;
			all.xy[(p * K + k) * 2 + 1] = 0.1 * (double)p;
		}
	}
	CHECK_EQ(score(&h, &all, ALL), 0);
	for (size_t p = 0; p < MAX_P; p++) {
		one.t0_ns[0] = all.t0_ns[p];
		memcpy(one.steer, all.steer + p * K, sizeof(double) * K);
		memcpy(one.accel, all.accel + p * K, sizeof(double) * K);
		memcpy(one.xy, all.xy + p * K * 2, sizeof(double) * K * 2);
		CHECK_EQ(score(&h, &one, ALL), 0);
		for (int c = DIV; c <= SPEED; c++) {
			const double a = col(&all, c, p), b = col(&one, c, 0);
			CHECK(memcmp(&a, &b, sizeof(a)) == 0);
		}
		CHECK(!isnan(col(&one, DIV, 0)));
	}
}

static void bad_arguments(void)
{
	static struct hist h;
	static struct batch b = {.n = 1, .t0_ns = {7000 * MS}};
	steady(&h, 10.0, 0.0, 0.0, 0.0);
	const int64_t *t = h.t_ns;
	const double *v = h.speed, *s = h.steer, *a = h.accel, *w = h.yaw;
	double *o = b.out;
#define SCORE(n_hist, t_, v_, s_, a_, w_, t0_, n_off, off_, ps, pa, xy, fl, steps, tau, hd, lo_, fr, cfg, out)   \
	shadowd_score_batch(n_hist, t_, v_, s_, a_, w_, 1, t0_, n_off, off_, ps, pa, xy, fl, steps, tau, hd, lo_, fr, \
			    cfg, out)
	for (size_t i = 0; i < SHADOWD_SCORE_COLUMNS; i++)
		o[i] = 7.0;
	CHECK_EQ(SCORE(HIST, NULL, v, s, a, w, b.t0_ns, K, offsets_ns, b.steer, b.accel, b.xy, ALL, STEPS, tau_ns,
		       half_dt, lo, frac, &CFG, o), -EINVAL);
	CHECK_EQ(SCORE(HIST, t, NULL, s, a, w, b.t0_ns, K, offsets_ns, b.steer, b.accel, b.xy, ALL, STEPS, tau_ns,
		       half_dt, lo, frac, &CFG, o), -EINVAL);
	CHECK_EQ(SCORE(HIST, t, v, s, a, w, NULL, K, offsets_ns, b.steer, b.accel, b.xy, ALL, STEPS, tau_ns,
		       half_dt, lo, frac, &CFG, o), -EINVAL);
	CHECK_EQ(SCORE(HIST, t, v, s, a, w, b.t0_ns, K, NULL, b.steer, b.accel, b.xy, ALL, STEPS, tau_ns, half_dt,
		       lo, frac, &CFG, o), -EINVAL);
	CHECK_EQ(SCORE(HIST, t, v, s, a, w, b.t0_ns, K, offsets_ns, b.steer, b.accel, b.xy, ALL, STEPS, tau_ns,
		       half_dt, lo, frac, NULL, o), -EINVAL);
	CHECK_EQ(SCORE(HIST, t, v, s, a, w, b.t0_ns, K, offsets_ns, b.steer, b.accel, b.xy, ALL, STEPS, tau_ns,
		       half_dt, lo, frac, &CFG, NULL), -EINVAL);
	CHECK_EQ(SCORE(HIST, t, v, s, a, w, b.t0_ns, 0, offsets_ns, b.steer, b.accel, b.xy, ALL, STEPS, tau_ns,
		       half_dt, lo, frac, &CFG, o), -EINVAL);
	CHECK_EQ(SCORE(HIST, t, v, s, a, w, b.t0_ns, SHADOWD_SCORE_MAX_OFFSETS + 1, offsets_ns, b.steer, b.accel,
		       b.xy, ALL, STEPS, tau_ns, half_dt, lo, frac, &CFG, o), -E2BIG);
	CHECK_EQ(SCORE(HIST, t, v, s, a, w, b.t0_ns, K, offsets_ns, b.steer, b.accel, b.xy, 8, STEPS, tau_ns,
		       half_dt, lo, frac, &CFG, o), -EINVAL); /* unknown flag */
	/* each term needs its history column and its predictions */
	CHECK_EQ(SCORE(HIST, t, v, NULL, a, w, b.t0_ns, K, offsets_ns, b.steer, b.accel, b.xy, SHADOWD_SCORE_STEER,
		       0, NULL, NULL, NULL, NULL, &CFG, o), -EINVAL);
	CHECK_EQ(SCORE(HIST, t, v, s, a, w, b.t0_ns, K, offsets_ns, NULL, b.accel, b.xy, SHADOWD_SCORE_STEER, 0,
		       NULL, NULL, NULL, NULL, &CFG, o), -EINVAL);
	CHECK_EQ(SCORE(HIST, t, v, s, NULL, w, b.t0_ns, K, offsets_ns, b.steer, b.accel, b.xy, SHADOWD_SCORE_ACCEL,
		       0, NULL, NULL, NULL, NULL, &CFG, o), -EINVAL);
	CHECK_EQ(SCORE(HIST, t, v, s, a, w, b.t0_ns, K, offsets_ns, b.steer, NULL, b.xy, SHADOWD_SCORE_ACCEL, 0,
		       NULL, NULL, NULL, NULL, &CFG, o), -EINVAL);
	CHECK_EQ(SCORE(HIST, t, v, s, a, NULL, b.t0_ns, K, offsets_ns, b.steer, b.accel, b.xy, SHADOWD_SCORE_TRAJ,
		       STEPS, tau_ns, half_dt, lo, frac, &CFG, o), -EINVAL);
	CHECK_EQ(SCORE(HIST, t, v, s, a, w, b.t0_ns, K, offsets_ns, b.steer, b.accel, NULL, SHADOWD_SCORE_TRAJ,
		       STEPS, tau_ns, half_dt, lo, frac, &CFG, o), -EINVAL);
	CHECK_EQ(SCORE(HIST, t, v, s, a, w, b.t0_ns, K, offsets_ns, b.steer, b.accel, b.xy, SHADOWD_SCORE_TRAJ, 0,
		       tau_ns, half_dt, lo, frac, &CFG, o), -EINVAL); /* no integration steps */
	CHECK_EQ(SCORE(HIST, t, v, s, a, w, b.t0_ns, K, offsets_ns, b.steer, b.accel, b.xy, SHADOWD_SCORE_TRAJ,
		       STEPS, NULL, half_dt, lo, frac, &CFG, o), -EINVAL);
	/* the grid: offsets past its end, or not in order */
	int64_t bad_lo[K];
	memcpy(bad_lo, lo, sizeof(bad_lo));
	bad_lo[K - 1] = STEPS;
	CHECK_EQ(SCORE(HIST, t, v, s, a, w, b.t0_ns, K, offsets_ns, b.steer, b.accel, b.xy, SHADOWD_SCORE_TRAJ,
		       STEPS, tau_ns, half_dt, bad_lo, frac, &CFG, o), -EINVAL);
	bad_lo[K - 1] = -1;
	CHECK_EQ(SCORE(HIST, t, v, s, a, w, b.t0_ns, K, offsets_ns, b.steer, b.accel, b.xy, SHADOWD_SCORE_TRAJ,
		       STEPS, tau_ns, half_dt, bad_lo, frac, &CFG, o), -EINVAL);
	bad_lo[K - 1] = lo[K - 2] - 1;
	CHECK_EQ(SCORE(HIST, t, v, s, a, w, b.t0_ns, K, offsets_ns, b.steer, b.accel, b.xy, SHADOWD_SCORE_TRAJ,
		       STEPS, tau_ns, half_dt, bad_lo, frac, &CFG, o), -EINVAL);
	for (size_t i = 0; i < SHADOWD_SCORE_COLUMNS; i++)
		CHECK(o[i] == 7.0); /* nothing written */
	/* what may be NULL: the history without rows, the columns and predictions of terms not
	 * asked for, everything of an empty batch */
	CHECK_EQ(SCORE(0, NULL, NULL, NULL, NULL, NULL, b.t0_ns, K, offsets_ns, b.steer, b.accel, b.xy, ALL, STEPS,
		       tau_ns, half_dt, lo, frac, &CFG, o), 0);
	CHECK(isnan(o[SPEED]) && isnan(o[DIV]) && isnan(o[ADE]));
	CHECK_EQ(shadowd_score_batch(HIST, t, v, NULL, NULL, NULL, 0, NULL, K, offsets_ns, NULL, NULL, NULL, 0, 0,
				     NULL, NULL, NULL, NULL, &CFG, o), 0);
	CHECK_EQ(shadowd_score_abi_version(), SHADOWD_SCORE_ABI_VERSION);
#undef SCORE
}

int main(void)
{
	grid();
	straight_line();
	left_circle();
	interpolation_rules();
	nan_handling();
	batch_independence();
	bad_arguments();
	return T_PASS;
}
