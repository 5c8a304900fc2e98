/*
 * shadowd/trig.h: the trigger evaluator -- every trigger expression of a trigger set, compiled
 * to one flat program, evaluated tick by tick, with its rising edges. shadowd/core/expr.py
 * (the scalar closures and the numpy chunk path) is the reference: the same values, bit for
 * bit, whatever the chunking (tests/triggers/test_native_equivalence.py holds this).
 *
 * Program: n_ops instructions; instruction i reads the results of earlier ones (a, b < i) and
 * leaves its own value. Values are float64; unknown is NaN; conditions are 1.0 / 0.0 / NaN
 * with Kleene and/or. LEAF and FLAG read value `name` of the tick (a non-finite value is
 * unknown; FLAG is 1.0 when non-zero). Windowed nodes (MAX_OVER .. PERIODIC) keep state
 * between ticks and take their window or period in param_ns. roots[r] is trigger r's
 * condition; it is "on" at a tick when its value is exactly 1.0.
 *
 * A tick's values come from `values` (n_values per tick, row-major) or, with values == NULL,
 * from the sources: the zero-order hold (the newest frame at or before the tick, NaN for every
 * field before the first frame) of each source's frames, field f going to value
 * value_index[f] (values no source names are unknown).
 *
 * shadowd_trig_run evaluates ticks in order (non-decreasing t_ns; the caller drops older
 * ones) and reports each edge -- a root on at a tick and not on at the tick before it, the
 * first tick ever counting as "before" off -- as edges[e] = {tick index, root}, with that
 * tick's n_values values copied to edge_values[e * n_values ...]. It stops before a tick
 * whose edges might not fit in max_edges (at least n_roots) and says in *ticks_done how many
 * ticks it evaluated; the caller calls again for the rest. root_values, when not NULL, gets
 * every root's value at each evaluated tick (n_roots per tick, row-major).
 * RETURN the number of edges written, -EINVAL (bad arguments), -ENOMEM (a window could not
 * grow; the tick that needed it is not counted in *ticks_done and the state is undefined).
 *
 * An evaluator is not thread-safe: one caller at a time. shadowd_trig_new copies the program.
 *
 * Everything between cffi-begin and cffi-end is also the cffi cdef (native/build_ffi.py).
 */
#ifndef SHADOWD_TRIG_H
#define SHADOWD_TRIG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* cffi-begin */
#define SHADOWD_TRIG_ABI_VERSION 1
#define SHADOWD_TRIG_MAX_OPS 65536
#define SHADOWD_TRIG_MAX_VALUES 4096

#define SHADOWD_TRIG_CONST 0
#define SHADOWD_TRIG_LEAF 1
#define SHADOWD_TRIG_FLAG 2
#define SHADOWD_TRIG_NEG 3
#define SHADOWD_TRIG_NOT 4
#define SHADOWD_TRIG_ABS 5
#define SHADOWD_TRIG_ADD 6
#define SHADOWD_TRIG_SUB 7
#define SHADOWD_TRIG_MUL 8
#define SHADOWD_TRIG_DIV 9
#define SHADOWD_TRIG_MIN 10
#define SHADOWD_TRIG_MAX 11
#define SHADOWD_TRIG_LT 12
#define SHADOWD_TRIG_LE 13
#define SHADOWD_TRIG_GT 14
#define SHADOWD_TRIG_GE 15
#define SHADOWD_TRIG_EQ 16
#define SHADOWD_TRIG_NE 17
#define SHADOWD_TRIG_AND 18
#define SHADOWD_TRIG_OR 19
#define SHADOWD_TRIG_MAX_OVER 20
#define SHADOWD_TRIG_MIN_OVER 21
#define SHADOWD_TRIG_MEAN_OVER 22
#define SHADOWD_TRIG_LAST 23
#define SHADOWD_TRIG_DELTA 24
#define SHADOWD_TRIG_HELD 25
#define SHADOWD_TRIG_RISING 26
#define SHADOWD_TRIG_FALLING 27
#define SHADOWD_TRIG_PERIODIC 28

struct shadowd_trig_op {
	int32_t op;       /* SHADOWD_TRIG_* */
	int32_t a, b;     /* operands: earlier instructions (-1: none) */
	int32_t name;     /* LEAF, FLAG: the value read */
	int64_t param_ns; /* windowed nodes: window (>= 0); PERIODIC: period (> 0) */
	double value;     /* CONST */
};

struct shadowd_trig_source {
	size_t n;                   /* frames, t_ns strictly ascending */
	const int64_t *t_ns;        /* n times */
	const uint8_t *frames;      /* n records of frame_stride bytes */
	size_t frame_stride;
	size_t n_fields;
	const size_t *field_offset; /* bytes into a record */
	const int *field_type;      /* SHADOWD_WINDOW_* (shadowd/window.h) */
	const size_t *value_index;  /* where field f goes among the tick's values */
};

struct shadowd_trig_edge {
	size_t tick;
	size_t root;
};

typedef struct shadowd_trig shadowd_trig;

int shadowd_trig_abi_version(void);
shadowd_trig *shadowd_trig_new(const struct shadowd_trig_op *ops, size_t n_ops, const int32_t *roots,
			       size_t n_roots, size_t n_values);
void shadowd_trig_free(shadowd_trig *tr);
int64_t shadowd_trig_run(shadowd_trig *tr, size_t n_ticks, const int64_t *t_ns, const double *values,
			 size_t n_sources, const struct shadowd_trig_source *sources,
			 struct shadowd_trig_edge *edges, double *edge_values, size_t max_edges,
			 double *root_values, size_t *ticks_done);
/* cffi-end */

#ifdef __cplusplus
}
#endif

#endif
