/*
 * trig.c: the trigger evaluator (see include/shadowd/trig.h). Each instruction is the C twin
 * of a node class in shadowd/core/expr.py, doing the same IEEE operations in the same order
 * (build with -ffp-contract=off); keep the two in sync. Windowed nodes keep their samples in
 * growable rings, as the Python nodes keep deques. Times are compared in 128 bits, so t - window
 * means what it means for Python's unbounded ints.
 */
#include "shadowd/trig.h"
#include "fields.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int shadowd_trig_abi_version(void)
{
	return SHADOWD_TRIG_ABI_VERSION;
}

/* A window's samples, oldest first: t, x (MEAN_OVER: the running sum before the sample) and k
 * (MEAN_OVER: the running count before it). */
struct ring {
	int64_t *t;
	double *x;
	int64_t *k;
	size_t head, len, cap; /* cap: 0 or a power of two */
};

struct node_state {
	struct ring r;
	double c;      /* MEAN_OVER: running sum; RISING/FALLING: previous value */
	int64_t k;     /* MEAN_OVER: running count; HELD: start of the true run; PERIODIC: previous slot */
	bool has;      /* HELD: in a true run; PERIODIC: a previous tick exists */
};

struct shadowd_trig {
	struct shadowd_trig_op *ops;
	struct node_state *state;
	double *r; /* each instruction's value at the current tick */
	int32_t *roots;
	bool *was_on;
	size_t n_ops, n_roots, n_values;
	double *values; /* one tick's values when read from sources */
};

#define MEAN_LIMIT 1e12 /* shadowd.core.expr.MEAN_LIMIT */

static inline size_t ring_at(const struct ring *r, size_t i)
{
	return (r->head + i) & (r->cap - 1);
}

static int ring_push(struct ring *r, int64_t t, double x, int64_t k)
{
	if (r->len == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 16;
		int64_t *nt = malloc(cap * sizeof *nt);
		double *nx = malloc(cap * sizeof *nx);
		int64_t *nk = malloc(cap * sizeof *nk);
		if (nt == NULL || nx == NULL || nk == NULL) {
			free(nt);
			free(nx);
			free(nk);
			return -ENOMEM;
		}
		for (size_t i = 0; i < r->len; i++) {
			size_t j = ring_at(r, i);
			nt[i] = r->t[j];
			nx[i] = r->x[j];
			nk[i] = r->k[j];
		}
		free(r->t);
		free(r->x);
		free(r->k);
		r->t = nt;
		r->x = nx;
		r->k = nk;
		r->head = 0;
		r->cap = cap;
	}
	size_t j = ring_at(r, r->len++);
	r->t[j] = t;
	r->x[j] = x;
	r->k[j] = k;
	return 0;
}

static inline void ring_pop_front(struct ring *r)
{
	r->head = (r->head + 1) & (r->cap - 1);
	r->len--;
}

/* t_a < t - w (strict) or t_a <= t - w, exactly */
static inline bool before(int64_t t_a, int64_t t, int64_t w, bool strict)
{
	__int128 lo = (__int128)t - w;
	return strict ? (__int128)t_a < lo : (__int128)t_a <= lo;
}

static inline double leaf(double x)
{
	return x - x == 0.0 ? x : NAN; /* +-inf is as unknown as NaN */
}

static inline int64_t floor_div(int64_t t, int64_t p)
{
	int64_t q = t / p;
	return (t % p != 0 && (t < 0) != (p < 0)) ? q - 1 : q;
}

/* max_over / min_over: a monotonic window; min_over keeps negated values (expr._Extremum) */
static int extremum(struct node_state *s, int64_t t, double x, int64_t w, bool neg, double *out)
{
	struct ring *r = &s->r;
	if (x == x) {
		if (neg)
			x = -x;
		while (r->len && r->x[ring_at(r, r->len - 1)] <= x)
			r->len--;
		if (ring_push(r, t, x, 0))
			return -ENOMEM;
	}
	while (r->len && before(r->t[r->head], t, w, true))
		ring_pop_front(r);
	if (!r->len) {
		*out = NAN;
		return 0;
	}
	double m = r->x[r->head];
	*out = neg ? -m : m;
	return 0;
}

/* mean_over: running sum and count, differenced at the window's first sample (expr._Mean) */
static int mean(struct node_state *s, int64_t t, double x, int64_t w, double *out)
{
	struct ring *r = &s->r;
	double c = s->c;
	int64_t k = s->k;
	if (ring_push(r, t, c, k))
		return -ENOMEM;
	if (-MEAN_LIMIT <= x && x <= MEAN_LIMIT) {
		s->c = c = c + x;
		s->k = k = k + 1;
	}
	while (before(r->t[r->head], t, w, true))
		ring_pop_front(r);
	int64_t n = k - r->k[r->head];
	*out = n == 0 ? NAN : (c - r->x[r->head]) / (double)n;
	return 0;
}

/* last / delta: the value at the latest tick at or before t - w (expr._Last) */
static int last(struct node_state *s, int64_t t, double x, int64_t w, bool diff, double *out)
{
	struct ring *r = &s->r;
	if (ring_push(r, t, x, 0))
		return -ENOMEM;
	while (r->len > 1 && before(r->t[ring_at(r, 1)], t, w, false))
		ring_pop_front(r);
	double past = before(r->t[r->head], t, w, false) ? r->x[r->head] : NAN;
	*out = diff ? x - past : past;
	return 0;
}

/* One tick of the program; values: this tick's n_values. */
static int tick(struct shadowd_trig *tr, int64_t t, const double *values)
{
	double *v = tr->r;
	for (size_t i = 0; i < tr->n_ops; i++) {
		const struct shadowd_trig_op *o = &tr->ops[i];
		struct node_state *s = &tr->state[i];
		const double x = o->a >= 0 ? v[o->a] : NAN;
		const double y = o->b >= 0 ? v[o->b] : NAN;
		double out;
		switch (o->op) {
		case SHADOWD_TRIG_CONST:
			out = o->value;
			break;
		case SHADOWD_TRIG_LEAF:
			out = leaf(values[o->name]);
			break;
		case SHADOWD_TRIG_FLAG: {
			double f = leaf(values[o->name]);
			out = f != f ? f : (f != 0.0 ? 1.0 : 0.0);
			break;
		}
		case SHADOWD_TRIG_NEG:
			out = -x;
			break;
		case SHADOWD_TRIG_NOT:
			out = 1.0 - x;
			break;
		case SHADOWD_TRIG_ABS:
			out = fabs(x);
			break;
		case SHADOWD_TRIG_ADD:
			out = x + y;
			break;
		case SHADOWD_TRIG_SUB:
			out = x - y;
			break;
		case SHADOWD_TRIG_MUL:
			out = x * y;
			break;
		case SHADOWD_TRIG_DIV:
			out = y == 0.0 ? NAN : x / y;
			break;
		case SHADOWD_TRIG_MIN:
			out = (x != x || y != y) ? NAN : (x <= y ? x : y);
			break;
		case SHADOWD_TRIG_MAX:
			out = (x != x || y != y) ? NAN : (x >= y ? x : y);
			break;
		case SHADOWD_TRIG_LT:
		case SHADOWD_TRIG_LE:
		case SHADOWD_TRIG_GT:
		case SHADOWD_TRIG_GE:
		case SHADOWD_TRIG_EQ:
		case SHADOWD_TRIG_NE: {
			if (x != x || y != y) {
				out = NAN;
				break;
			}
			bool c;
			switch (o->op) {
			case SHADOWD_TRIG_LT:
				c = x < y;
				break;
			case SHADOWD_TRIG_LE:
				c = x <= y;
				break;
			case SHADOWD_TRIG_GT:
				c = x > y;
				break;
			case SHADOWD_TRIG_GE:
				c = x >= y;
				break;
			case SHADOWD_TRIG_EQ:
				c = x == y;
				break;
			default:
				c = x != y;
				break;
			}
			out = c ? 1.0 : 0.0;
			break;
		}
		case SHADOWD_TRIG_AND: /* Kleene: false wins over unknown */
			out = (x == 0.0 || y == 0.0) ? 0.0 : ((x != x || y != y) ? NAN : 1.0);
			break;
		case SHADOWD_TRIG_OR: /* Kleene: true wins over unknown */
			out = (x == 1.0 || y == 1.0) ? 1.0 : ((x != x || y != y) ? NAN : 0.0);
			break;
		case SHADOWD_TRIG_MAX_OVER:
		case SHADOWD_TRIG_MIN_OVER:
			if (extremum(s, t, x, o->param_ns, o->op == SHADOWD_TRIG_MIN_OVER, &out))
				return -ENOMEM;
			break;
		case SHADOWD_TRIG_MEAN_OVER:
			if (mean(s, t, x, o->param_ns, &out))
				return -ENOMEM;
			break;
		case SHADOWD_TRIG_LAST:
		case SHADOWD_TRIG_DELTA:
			if (last(s, t, x, o->param_ns, o->op == SHADOWD_TRIG_DELTA, &out))
				return -ENOMEM;
			break;
		case SHADOWD_TRIG_HELD: /* true once x has been true at every tick for param_ns */
			if (x == 1.0) {
				if (!s->has) {
					s->has = true;
					s->k = t;
				}
				out = (__int128)t - s->k >= o->param_ns ? 1.0 : 0.0;
			} else {
				s->has = false;
				out = 0.0;
			}
			break;
		case SHADOWD_TRIG_RISING:
		case SHADOWD_TRIG_FALLING: {
			const double from = o->op == SHADOWD_TRIG_RISING ? 0.0 : 1.0;
			out = (s->c == from && x == 1.0 - from) ? 1.0 : 0.0;
			s->c = x;
			break;
		}
		default: { /* SHADOWD_TRIG_PERIODIC (shadowd_trig_new checked the op) */
			int64_t slot = floor_div(t, o->param_ns);
			out = (s->has && slot != s->k) ? 1.0 : 0.0;
			s->has = true;
			s->k = slot;
			break;
		}
		}
		v[i] = out;
	}
	return 0;
}

static bool valid_op(const struct shadowd_trig_op *o, size_t i, size_t n_values)
{
	int32_t op = o->op;
	if (op < SHADOWD_TRIG_CONST || op > SHADOWD_TRIG_PERIODIC)
		return false;
	int need = 0; /* operands */
	if (op >= SHADOWD_TRIG_NEG && op <= SHADOWD_TRIG_ABS)
		need = 1;
	else if (op >= SHADOWD_TRIG_ADD && op <= SHADOWD_TRIG_OR)
		need = 2;
	else if (op >= SHADOWD_TRIG_MAX_OVER && op <= SHADOWD_TRIG_FALLING)
		need = 1;
	if (need >= 1 ? !(o->a >= 0 && (size_t)o->a < i) : o->a != -1)
		return false;
	if (need == 2 ? !(o->b >= 0 && (size_t)o->b < i) : o->b != -1)
		return false;
	if ((op == SHADOWD_TRIG_LEAF || op == SHADOWD_TRIG_FLAG) && (o->name < 0 || (size_t)o->name >= n_values))
		return false;
	if (op >= SHADOWD_TRIG_MAX_OVER && op <= SHADOWD_TRIG_HELD && o->param_ns < 0)
		return false;
	if (op == SHADOWD_TRIG_PERIODIC && o->param_ns <= 0)
		return false;
	return true;
}

shadowd_trig *shadowd_trig_new(const struct shadowd_trig_op *ops, size_t n_ops, const int32_t *roots,
			       size_t n_roots, size_t n_values)
{
	if ((n_ops && ops == NULL) || (n_roots && roots == NULL) || n_ops > SHADOWD_TRIG_MAX_OPS ||
	    n_values > SHADOWD_TRIG_MAX_VALUES) {
		errno = EINVAL;
		return NULL;
	}
	for (size_t i = 0; i < n_ops; i++)
		if (!valid_op(&ops[i], i, n_values)) {
			errno = EINVAL;
			return NULL;
		}
	for (size_t r = 0; r < n_roots; r++)
		if (roots[r] < 0 || (size_t)roots[r] >= n_ops) {
			errno = EINVAL;
			return NULL;
		}
	shadowd_trig *tr = calloc(1, sizeof *tr);
	if (tr == NULL)
		return NULL;
	tr->n_ops = n_ops;
	tr->n_roots = n_roots;
	tr->n_values = n_values;
	tr->ops = malloc((n_ops ? n_ops : 1) * sizeof *tr->ops);
	tr->state = calloc(n_ops ? n_ops : 1, sizeof *tr->state);
	tr->r = calloc(n_ops ? n_ops : 1, sizeof *tr->r);
	tr->roots = malloc((n_roots ? n_roots : 1) * sizeof *tr->roots);
	tr->was_on = calloc(n_roots ? n_roots : 1, sizeof *tr->was_on);
	tr->values = malloc((n_values ? n_values : 1) * sizeof *tr->values);
	if (!tr->ops || !tr->state || !tr->r || !tr->roots || !tr->was_on || !tr->values) {
		shadowd_trig_free(tr);
		errno = ENOMEM;
		return NULL;
	}
	if (n_ops)
		memcpy(tr->ops, ops, n_ops * sizeof *ops);
	if (n_roots)
		memcpy(tr->roots, roots, n_roots * sizeof *roots);
	for (size_t i = 0; i < n_ops; i++)
		if (ops[i].op == SHADOWD_TRIG_RISING || ops[i].op == SHADOWD_TRIG_FALLING)
			tr->state[i].c = NAN; /* no previous tick */
	return tr;
}

void shadowd_trig_free(shadowd_trig *tr)
{
	if (tr == NULL)
		return;
	if (tr->state)
		for (size_t i = 0; i < tr->n_ops; i++) {
			free(tr->state[i].r.t);
			free(tr->state[i].r.x);
			free(tr->state[i].r.k);
		}
	free(tr->ops);
	free(tr->state);
	free(tr->r);
	free(tr->roots);
	free(tr->was_on);
	free(tr->values);
	free(tr);
}

static bool valid_sources(const shadowd_trig *tr, size_t n_sources, const struct shadowd_trig_source *src)
{
	if (n_sources && src == NULL)
		return false;
	for (size_t s = 0; s < n_sources; s++) {
		const struct shadowd_trig_source *so = &src[s];
		if (so->n && (so->t_ns == NULL || so->frames == NULL))
			return false;
		if (so->n_fields && (so->field_offset == NULL || so->field_type == NULL || so->value_index == NULL))
			return false;
		for (size_t f = 0; f < so->n_fields; f++) {
			size_t size = type_size(so->field_type[f]);
			if (size == 0 || so->field_offset[f] + size > so->frame_stride ||
			    so->value_index[f] >= tr->n_values)
				return false;
		}
	}
	return true;
}

/* The zero-order hold of every source at t into tr->values (NaN where none). */
static void hold_values(shadowd_trig *tr, int64_t t, size_t n_sources, const struct shadowd_trig_source *src,
			ptrdiff_t *last)
{
	double *vals = tr->values;
	for (size_t i = 0; i < tr->n_values; i++)
		vals[i] = NAN;
	for (size_t s = 0; s < n_sources; s++) {
		const struct shadowd_trig_source *so = &src[s];
		ptrdiff_t j = last[s] = hold_index(so->t_ns, (ptrdiff_t)so->n, t, last[s]);
		if (j < 0)
			continue;
		const uint8_t *rec = so->frames + (size_t)j * so->frame_stride;
		for (size_t f = 0; f < so->n_fields; f++)
			vals[so->value_index[f]] = field_value(rec + so->field_offset[f], so->field_type[f]);
	}
}

#define MAX_HOLD_SOURCES 64

int64_t shadowd_trig_run(shadowd_trig *tr, size_t n_ticks, const int64_t *t_ns, const double *values,
			 size_t n_sources, const struct shadowd_trig_source *sources,
			 struct shadowd_trig_edge *edges, double *edge_values, size_t max_edges,
			 double *root_values, size_t *ticks_done)
{
	if (tr == NULL || ticks_done == NULL || (n_ticks && t_ns == NULL) || max_edges < tr->n_roots ||
	    (tr->n_roots && (edges == NULL || (tr->n_values && edge_values == NULL))))
		return -EINVAL;
	*ticks_done = 0;
	if (values == NULL && (n_sources > MAX_HOLD_SOURCES || !valid_sources(tr, n_sources, sources)))
		return -EINVAL;
	ptrdiff_t last[MAX_HOLD_SOURCES];
	for (size_t s = 0; s < n_sources && s < MAX_HOLD_SOURCES; s++)
		last[s] = -1;
	size_t n_edges = 0;
	for (size_t i = 0; i < n_ticks; i++) {
		if (n_edges + tr->n_roots > max_edges)
			break;
		const int64_t t = t_ns[i];
		const double *vals;
		if (values != NULL) {
			vals = values + i * tr->n_values;
		} else {
			hold_values(tr, t, n_sources, sources, last);
			vals = tr->values;
		}
		if (tick(tr, t, vals))
			return -ENOMEM;
		for (size_t k = 0; k < tr->n_roots; k++) {
			const double root = tr->r[tr->roots[k]];
			const bool on = root == 1.0;
			if (root_values != NULL)
				root_values[i * tr->n_roots + k] = root;
			if (on && !tr->was_on[k]) {
				edges[n_edges].tick = i;
				edges[n_edges].root = k;
				if (tr->n_values)
					memcpy(edge_values + n_edges * tr->n_values, vals, tr->n_values * sizeof *vals);
				n_edges++;
			}
			tr->was_on[k] = on;
		}
		*ticks_done = i + 1;
	}
	return (int64_t)n_edges;
}
