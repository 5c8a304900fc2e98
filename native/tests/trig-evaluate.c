/* The trigger evaluator: held / mean_over / rising on values given per tick, rising edges with
 * the tick's values, reading zero-order holds from frames (NaN before the first frame), a call
 * that stops when its edge slots run out and goes on where it stopped, windows that grow
 * past their first allocation, and the documented argument errors. */
#include "helpers.h"
#include "shadowd/trig.h"
#include "shadowd/window.h"

#include <math.h>

#define MS 1000000LL

static struct shadowd_trig_op op(int code, int a, int b, int name, int64_t param_ns, double value)
{
	struct shadowd_trig_op o = {code, a, b, name, param_ns, value};
	return o;
}

/* root 0: held(x > 1, 40ms); root 1: mean_over(x, 50ms) > 2; root 2: rising(flag) */
static shadowd_trig *program(void)
{
	struct shadowd_trig_op ops[] = {
		op(SHADOWD_TRIG_LEAF, -1, -1, 0, 0, 0),        /* 0: x */
		op(SHADOWD_TRIG_CONST, -1, -1, -1, 0, 1.0),    /* 1: 1 */
		op(SHADOWD_TRIG_GT, 0, 1, -1, 0, 0),           /* 2: x > 1 */
		op(SHADOWD_TRIG_HELD, 2, -1, -1, 40 * MS, 0),  /* 3: held(.., 40ms) */
		op(SHADOWD_TRIG_MEAN_OVER, 0, -1, -1, 50 * MS, 0), /* 4 */
		op(SHADOWD_TRIG_CONST, -1, -1, -1, 0, 2.0),    /* 5: 2 */
		op(SHADOWD_TRIG_GT, 4, 5, -1, 0, 0),           /* 6 */
		op(SHADOWD_TRIG_FLAG, -1, -1, 1, 0, 0),        /* 7: flag */
		op(SHADOWD_TRIG_RISING, 7, -1, -1, 0, 0),      /* 8 */
	};
	int32_t roots[] = {3, 6, 8};
	shadowd_trig *tr = shadowd_trig_new(ops, 9, roots, 3, 2);
	CHECK(tr != NULL);
	return tr;
}

static void values_given(void)
{
	shadowd_trig *tr = program();
	/* ticks every 10 ms: x 0, 3, 3, 3, 3, 3, 3, 0; flag 0, 0, 5, 5, 0, 7, NaN, 1 */
	int64_t t[8];
	double v[16], roots[24];
	const double x[8] = {0, 3, 3, 3, 3, 3, 3, 0}, flag[8] = {0, 0, 5, 5, 0, 7, NAN, 1};
	for (int i = 0; i < 8; i++) {
		t[i] = 1000 * MS + i * 10 * MS;
		v[2 * i] = x[i];
		v[2 * i + 1] = flag[i];
	}
	struct shadowd_trig_edge edges[24];
	double edge_values[48];
	size_t done = 99;
	int64_t n = shadowd_trig_run(tr, 8, t, v, 0, NULL, edges, edge_values, 24, roots, &done);
	CHECK_EQ(done, 8);
	/* held: true at ticks 5, 6 (x > 1 since tick 1, 40 ms at tick 5); mean over 50 ms (up
	 * to 6 samples at 10 ms steps) > 2 from tick 3 (9/4) on, still at tick 7 (15/6);
	 * rising(flag): ticks 2, 5 (NaN at 6 is no edge at 7) */
	CHECK_EQ(n, 4);
	CHECK_EQ(edges[0].tick, 2);
	CHECK_EQ(edges[0].root, 2);
	CHECK(edge_values[0] == 3.0 && edge_values[1] == 5.0);
	CHECK_EQ(edges[1].tick, 3);
	CHECK_EQ(edges[1].root, 1);
	CHECK_EQ(edges[2].tick, 5);
	CHECK_EQ(edges[2].root, 0);
	CHECK_EQ(edges[3].tick, 5);
	CHECK_EQ(edges[3].root, 2);
	CHECK(roots[3 * 4 + 0] == 0.0 && roots[3 * 5 + 0] == 1.0 && roots[3 * 7 + 0] == 0.0);
	CHECK(roots[3 * 2 + 1] == 0.0 && roots[3 * 7 + 1] == 1.0);
	CHECK(roots[3 * 7 + 2] == 0.0); /* NaN then 1: not an edge */
	shadowd_trig_free(tr);
}

struct rec {
	int64_t t_ns;
	float x;
	uint8_t flag;
} __attribute__((packed));

static void values_from_frames(void)
{
	shadowd_trig *tr = program();
	struct rec frames[3] = {{100 * MS, 5.0f, 1}, {120 * MS, 0.5f, 0}, {140 * MS, 4.0f, 1}};
	int64_t ft[3] = {100 * MS, 120 * MS, 140 * MS};
	size_t offs[2] = {8, 12};
	int types[2] = {SHADOWD_WINDOW_F4, SHADOWD_WINDOW_U1};
	size_t index[2] = {0, 1};
	struct shadowd_trig_source src = {3, ft, (const uint8_t *)frames, sizeof(struct rec), 2, offs, types, index};
	int64_t t[4] = {90 * MS, 110 * MS, 130 * MS, 150 * MS};
	struct shadowd_trig_edge edges[12];
	double ev[24], roots[12];
	size_t done;
	int64_t n = shadowd_trig_run(tr, 4, t, NULL, 1, &src, edges, ev, 12, roots, &done);
	CHECK_EQ(done, 4);
	/* holds: none (NaN), frame 0 (5, 1), frame 1 (0.5, 0), frame 2 (4, 1) */
	CHECK_EQ(n, 2); /* rising(flag) at tick 3 only (NaN -> 1 at tick 1 is no edge); no held/mean */
	CHECK_EQ(edges[0].tick, 1);
	CHECK_EQ(edges[0].root, 1); /* mean of 5 > 2 at tick 1 */
	CHECK(ev[0] == 5.0 && ev[1] == 1.0);
	CHECK_EQ(edges[1].tick, 3);
	CHECK_EQ(edges[1].root, 2);
	CHECK(ev[2] == 4.0 && ev[3] == 1.0);
	CHECK(isnan(roots[1])); /* mean_over with no sample yet: unknown */
	shadowd_trig_free(tr);
}

static void stops_when_edges_run_out(void)
{
	/* x > 0 toggling each tick: an edge every other tick; 3 slots per call */
	struct shadowd_trig_op ops[] = {op(SHADOWD_TRIG_LEAF, -1, -1, 0, 0, 0), op(SHADOWD_TRIG_CONST, -1, -1, -1, 0, 0),
					op(SHADOWD_TRIG_GT, 0, 1, -1, 0, 0),
					op(SHADOWD_TRIG_MAX_OVER, 0, -1, -1, 60000 * MS, 0)};
	int32_t roots[] = {2};
	shadowd_trig *tr = shadowd_trig_new(ops, 4, roots, 1, 1);
	CHECK(tr != NULL);
	enum { N = 5000 }; /* the 60 s window grows far past its first ring */
	static int64_t t[N];
	static double v[N];
	for (int i = 0; i < N; i++) {
		t[i] = i * 10 * MS;
		v[i] = i % 2 ? 1.0 : -1.0;
	}
	struct shadowd_trig_edge edges[3];
	double ev[3];
	size_t start = 0, total = 0, calls = 0;
	while (start < N) {
		size_t done;
		int64_t n = shadowd_trig_run(tr, N - start, t + start, v + start, 0, NULL, edges, ev, 3, NULL, &done);
		CHECK(n >= 0 && n <= 3);
		CHECK(done > 0);
		for (int64_t e = 0; e < n; e++)
			CHECK_EQ((start + edges[e].tick) % 2, 1);
		total += (size_t)n;
		start += done;
		calls++;
	}
	CHECK_EQ(total, N / 2);
	CHECK(calls >= N / 2 / 3);
	shadowd_trig_free(tr);
}

static void rejects_bad_arguments(void)
{
	struct shadowd_trig_op fwd[] = {op(SHADOWD_TRIG_NEG, 1, -1, -1, 0, 0), op(SHADOWD_TRIG_CONST, -1, -1, -1, 0, 1)};
	int32_t root0[] = {0}, root9[] = {9};
	errno = 0;
	CHECK(shadowd_trig_new(fwd, 2, root0, 1, 0) == NULL); /* operand after the node */
	CHECK_EQ(errno, EINVAL);
	struct shadowd_trig_op leaf[] = {op(SHADOWD_TRIG_LEAF, -1, -1, 3, 0, 0)};
	CHECK(shadowd_trig_new(leaf, 1, root0, 1, 2) == NULL); /* value 3 of 2 */
	CHECK(shadowd_trig_new(leaf, 1, root9, 1, 4) == NULL); /* root past the program */
	struct shadowd_trig_op per[] = {op(SHADOWD_TRIG_PERIODIC, -1, -1, -1, 0, 0)};
	CHECK(shadowd_trig_new(per, 1, root0, 1, 0) == NULL); /* period 0 */
	struct shadowd_trig_op bad[] = {op(99, -1, -1, -1, 0, 0)};
	CHECK(shadowd_trig_new(bad, 1, root0, 1, 0) == NULL);
	shadowd_trig *tr = program();
	struct shadowd_trig_edge edges[3];
	double ev[6];
	size_t done;
	int64_t t = 0;
	CHECK_EQ(shadowd_trig_run(tr, 1, &t, NULL, 0, NULL, edges, ev, 2, NULL, &done), -EINVAL); /* < n_roots slots */
	CHECK_EQ(shadowd_trig_run(tr, 1, &t, NULL, 0, NULL, edges, ev, 3, NULL, NULL), -EINVAL);
	int64_t ft = 0;
	float frame = 0;
	size_t off = 6, idx = 0;
	int type = SHADOWD_WINDOW_F4;
	struct shadowd_trig_source src = {1, &ft, (const uint8_t *)&frame, 8, 1, &off, &type, &idx};
	CHECK_EQ(shadowd_trig_run(tr, 1, &t, NULL, 1, &src, edges, ev, 3, NULL, &done), -EINVAL); /* field past the record */
	off = 0;
	idx = 2;
	CHECK_EQ(shadowd_trig_run(tr, 1, &t, NULL, 1, &src, edges, ev, 3, NULL, &done), -EINVAL); /* value 2 of 2 */
	shadowd_trig_free(tr);
	shadowd_trig_free(NULL);
}

int main(void)
{
	values_given();
	values_from_frames();
	stops_when_edges_run_out();
	rejects_bad_arguments();
	return T_PASS;
}
