/*
 * interp.h: np.interp's linear interpolation (left = right = NaN) on int64 nanosecond times,
 * shared by the divergence kernel (score.c) and the model-window sampler (window.c). Times are
 * taken relative to the first sample as float64, as the numpy code converts them, so a value
 * depends only on the samples around it, never on which samples a caller still holds.
 * Build with -ffp-contract=off (see score.c).
 */
#ifndef SHADOWD_INTERP_H
#define SHADOWD_INTERP_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#define WALK_STEPS 8 /* samples walked forward from the previous bracket before galloping */

/* The history as np.interp sees it: float64 times relative to the first sample. */
struct hist {
	const int64_t *t_ns;
	ptrdiff_t n;
	int64_t base_ns;
};

/* int64 sums and differences that wrap as numpy's int64 arithmetic does (no signed overflow) */
static inline int64_t add_wrap(int64_t a, int64_t b)
{
	return (int64_t)((uint64_t)a + (uint64_t)b);
}

static inline double rel_ns(const struct hist *h, int64_t t_ns)
{
	return (double)(int64_t)((uint64_t)t_ns - (uint64_t)h->base_ns);
}

static inline double xp(const struct hist *h, ptrdiff_t j)
{
	return rel_ns(h, h->t_ns[j]);
}

/* A query and its bracket: j is np.interp's (binary_search_with_guess) -- the last sample at
 * or before x, -1 before the first sample, n after the last -- and x0, x1 the times of samples
 * j and j + 1 when both exist. */
struct at {
	ptrdiff_t j;
	double x, x0, x1;
};

/* The last j in [lo, hi) with xp[j] <= x, given xp[lo] <= x and (hi == n or xp[hi] > x). */
static ptrdiff_t bisect(const struct hist *h, double x, ptrdiff_t lo, ptrdiff_t hi)
{
	while (hi - lo > 1) {
		ptrdiff_t mid = lo + (hi - lo) / 2;
		if (xp(h, mid) <= x)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/* Bracket the query x, starting from a previous bracket in a->j (-1 for none): queries
 * ascend, so this is a short walk forward, then a galloping search when the walk is long; a
 * bisection of the whole history when the query went back. */
static inline void locate(const struct hist *h, double x, struct at *a)
{
	const ptrdiff_t n = h->n;
	ptrdiff_t j = a->j;
	a->x = x;
	if (j >= 0 && j < n && xp(h, j) <= x) {
		for (ptrdiff_t step = 1;; j++) {
			if (j + 1 == n) { /* on the last sample: a hit returns it, past it is NaN */
				a->j = x > xp(h, j) ? n : j;
				return;
			}
			if (xp(h, j + 1) > x)
				break;
			if (++step > WALK_STEPS) { /* gallop: xp[j + 1] <= x */
				ptrdiff_t lo = j + 1, hi = lo + step;
				while (hi < n && xp(h, hi) <= x) {
					lo = hi;
					step *= 2;
					hi = lo + step;
				}
				j = bisect(h, x, lo, hi < n ? hi : n);
				if (j == n - 1) {
					a->j = x > xp(h, j) ? n : j;
					return;
				}
				break;
			}
		}
	} else if (n == 0 || x < xp(h, 0)) {
		a->j = -1;
		return;
	} else if (x > xp(h, n - 1)) {
		a->j = n;
		return;
	} else {
		j = bisect(h, x, 0, n);
	}
	a->j = j;
	if (j < n - 1) {
		a->x0 = xp(h, j);
		a->x1 = xp(h, j + 1);
	}
}

/* np.interp's formula between the bracket's samples y0 = y[j] and y1 = y[j + 1] (the query is
 * strictly inside a bracket of two samples), its NaN fallbacks included. */
static inline double interp_between(const struct at *a, double y0, double y1)
{
	const double slope = (y1 - y0) / (a->x1 - a->x0);
	double r = slope * (a->x - a->x0) + y0;
	if (isnan(r)) {
		r = slope * (a->x - a->x1) + y1;
		if (isnan(r) && y0 == y1)
			r = y0;
	}
	return r;
}

/* np.interp's value of y at a located query (left = right = NaN). */
static inline double interp(const struct hist *h, const double *y, const struct at *a)
{
	const ptrdiff_t j = a->j;
	if (j < 0 || j >= h->n)
		return NAN;
	if (j == h->n - 1 || a->x0 == a->x)
		return y[j];
	return interp_between(a, y[j], y[j + 1]);
}

#endif
