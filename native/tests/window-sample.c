/* The model-window sampler: linear interpolation between the frames around a query (NaN
 * outside them), zero-order hold (NaN before the first frame), every field type, overlapping
 * windows whose queries go back, queries relative to a base, the count of unknown values it
 * returns, and the documented argument errors. */
#include "helpers.h"
#include "shadowd/window.h"

#include <math.h>
#include <string.h>

struct rec {
	int64_t t_ns;
	float speed;
	uint8_t flag;
	int8_t gear;
	uint16_t pad;
	double x;
} __attribute__((packed));

#define N 5
static struct rec frames[N];
static int64_t t[N];

static void fill(void)
{
	for (int i = 0; i < N; i++) {
		t[i] = 1000 + 100 * i; /* 1000, 1100, ..., 1400 */
		frames[i].t_ns = t[i];
		frames[i].speed = (float)(10 * i); /* 0, 10, 20, 30, 40 */
		frames[i].flag = (uint8_t)(i % 2);
		frames[i].gear = (int8_t)(-i);
		frames[i].x = 0.5 * i;
	}
}

static const size_t offs[4] = {8, 12, 13, 16};
static const int types[4] = {SHADOWD_WINDOW_F4, SHADOWD_WINDOW_U1, SHADOWD_WINDOW_I1, SHADOWD_WINDOW_F8};
static const size_t cols[4] = {0, 1, 2, 3};

static void linear_and_hold(void)
{
	const int linear[4] = {1, 0, 0, 1};
	const int64_t q[6] = {900, 1000, 1050, 1399, 1400, 1401};
	float out[6 * 4];
	/* unknown: all four before the first frame, speed and x (linear) after the last */
	CHECK_EQ(shadowd_window_sample(N, t, (const uint8_t *)frames, sizeof(struct rec), 4, offs, types, linear, 6, 0,
				       q, out, 4, cols), 6);
	CHECK(isnan(out[0 * 4 + 0]) && isnan(out[0 * 4 + 1]) && isnan(out[0 * 4 + 3])); /* before the first */
	CHECK(out[1 * 4 + 0] == 0.0f && out[1 * 4 + 1] == 0.0f);                         /* on the first */
	CHECK(out[2 * 4 + 0] == 5.0f && out[2 * 4 + 3] == 0.25f);                         /* halfway */
	CHECK(out[2 * 4 + 1] == 0.0f && out[2 * 4 + 2] == 0.0f);                          /* hold frame 0 */
	CHECK(fabsf(out[3 * 4 + 0] - 39.9f) < 1e-5f && out[3 * 4 + 1] == 1.0f && out[3 * 4 + 2] == -3.0f);
	CHECK(out[4 * 4 + 0] == 40.0f && out[4 * 4 + 2] == -4.0f);                        /* on the last */
	CHECK(isnan(out[5 * 4 + 0]) && out[5 * 4 + 2] == -4.0f); /* after the last: linear unknown, hold holds */
}

static void queries_that_go_back(void)
{
	const int linear[4] = {1, 0, 1, 0};
	const int64_t q[6] = {1000, 1200, 1400, 1100, 1300, 1000}; /* three overlapping windows */
	float out[6 * 4];
	CHECK_EQ(shadowd_window_sample(N, t, (const uint8_t *)frames, sizeof(struct rec), 4, offs, types, linear, 6, 0,
				       q, out, 4, cols), 0);
	const float speed[6] = {0, 20, 40, 10, 30, 0};
	for (int i = 0; i < 6; i++) {
		CHECK(out[i * 4 + 0] == speed[i]);
		CHECK(out[i * 4 + 3] == (float)(0.5 * ((q[i] - 1000) / 100))); /* hold of x */
	}
}

static void queries_relative_to_a_base(void)
{
	const int linear[4] = {1, 0, 1, 0};
	const int64_t offsets[3] = {-200, -100, 0}; /* a window ending at its tick */
	const int64_t q[3] = {1100, 1200, 1300};
	float rel[3 * 4], abs_[3 * 4];
	CHECK_EQ(shadowd_window_sample(N, t, (const uint8_t *)frames, sizeof(struct rec), 4, offs, types, linear, 3, 1300,
				       offsets, rel, 4, cols), 0);
	CHECK_EQ(shadowd_window_sample(N, t, (const uint8_t *)frames, sizeof(struct rec), 4, offs, types, linear, 3, 0, q,
				       abs_, 4, cols), 0);
	CHECK(memcmp(rel, abs_, sizeof rel) == 0);
	CHECK(rel[2 * 4 + 0] == 30.0f);
}

static void bad_arguments(void)
{
	const int linear[4] = {1, 1, 1, 1};
	const int64_t q[1] = {1000};
	float out[4];
	const int bad_type[4] = {SHADOWD_WINDOW_F4, 99, SHADOWD_WINDOW_I1, SHADOWD_WINDOW_F8};
	CHECK_EQ(shadowd_window_sample(N, t, (const uint8_t *)frames, sizeof(struct rec), 4, offs, bad_type, linear, 1, 0,
				       q, out, 4, cols), -EINVAL);
	const size_t past[4] = {8, 12, 13, 17}; /* an f8 at 17 ends past the 24-byte record */
	CHECK_EQ(shadowd_window_sample(N, t, (const uint8_t *)frames, sizeof(struct rec), 4, past, types, linear, 1, 0, q,
				       out, 4, cols), -EINVAL);
	CHECK_EQ(shadowd_window_sample(N, NULL, (const uint8_t *)frames, sizeof(struct rec), 4, offs, types, linear, 1, 0,
				       q, out, 4, cols), -EINVAL);
	CHECK_EQ(shadowd_window_sample(N, t, (const uint8_t *)frames, sizeof(struct rec), 4, offs, types, linear, 1, 0, q,
				       out, 3, cols), -EINVAL); /* a column past the row */
	CHECK_EQ(shadowd_window_sample(N, t, (const uint8_t *)frames, sizeof(struct rec), SHADOWD_WINDOW_MAX_FIELDS + 1,
				       offs, types, linear, 1, 0, q, out, 4, cols), -E2BIG);
	/* no frames: every value unknown */
	CHECK_EQ(shadowd_window_sample(0, NULL, NULL, sizeof(struct rec), 4, offs, types, linear, 1, 0, q, out, 4, cols), 4);
	CHECK(isnan(out[0]) && isnan(out[3]));
}

int main(void)
{
	CHECK_EQ(shadowd_window_abi_version(), SHADOWD_WINDOW_ABI_VERSION);
	fill();
	linear_and_hold();
	queries_that_go_back();
	queries_relative_to_a_base();
	bad_arguments();
	return T_PASS;
}
