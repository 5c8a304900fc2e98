/* Table test (ck's test_valid): an empty ring, a ring filled exactly to capacity, one frame
 * past it, and a reader lapped several times over; drops are exact and reading resumes at
 * the oldest still-valid frame. */
#include "helpers.h"

static void write_n(struct shadowd_ring *w, uint64_t first, uint64_t n)
{
	unsigned char buf[32];
	for (uint64_t i = first; i < first + n; i++) {
		t_fill(buf, 32, i);
		CHECK_EQ(shadowd_ring_write(w, buf, 32, (int64_t)i), 0);
	}
}

/* Read everything; check in-order contents and return (frames, dropped). */
static void drain(struct shadowd_ring *r, uint64_t first_expected, uint64_t *frames, uint64_t *dropped)
{
	unsigned char out[7 * 32];
	int64_t ts[7];
	uint64_t next = first_expected;
	*frames = *dropped = 0;
	for (;;) {
		uint64_t d;
		int n = shadowd_ring_read_batch(r, out, 32, 7, ts, NULL, &d);
		CHECK(n >= 0);
		if (n == 0) {
			CHECK_EQ(d, 0);
			break;
		}
		next += d;
		for (int i = 0; i < n; i++, next++) {
			CHECK_EQ(t_verify(out + i * 32, 32), next);
			CHECK_EQ(ts[i], (int64_t)next);
		}
		*frames += (uint64_t)n;
		*dropped += d;
	}
}

int main(void)
{
	const char *path = t_segment_path("efl");
	const uint64_t cap = 16;
	struct {
		const char *name;
		uint64_t written;
		uint64_t want_frames, want_dropped;
	} cases[] = {
		{"empty", 0, 0, 0},
		{"one", 1, 1, 0},
		{"full", cap, cap, 0},
		{"one past full", cap + 1, cap, 1},
		{"lapped 3.5x", 3 * cap + cap / 2, cap, 2 * cap + cap / 2},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct shadowd_ring *w, *r;
		unlink(path); /* fresh for each case */
		CHECK_EQ(shadowd_ring_create(path, 32, cap, 0, 0, &w), 0);
		CHECK_EQ(shadowd_ring_open(path, 32, 0, NULL, &r), 0); /* cursor at 0 */
		write_n(w, 0, cases[c].written);
		uint64_t frames, dropped;
		drain(r, 0, &frames, &dropped);
		if (frames != cases[c].want_frames || dropped != cases[c].want_dropped) {
			fprintf(stderr, "case %s: frames %llu dropped %llu, want %llu %llu\n", cases[c].name,
				(unsigned long long)frames, (unsigned long long)dropped,
				(unsigned long long)cases[c].want_frames, (unsigned long long)cases[c].want_dropped);
			return T_FAIL;
		}
		CHECK_EQ(frames + dropped, cases[c].written);
		/* a reader opened FROM_OLDEST afterwards sees the same history without drops */
		struct shadowd_ring *r2;
		CHECK_EQ(shadowd_ring_open(path, 32, SHADOWD_RING_FROM_OLDEST, NULL, &r2), 0);
		uint64_t f2, d2;
		drain(r2, cases[c].written - cases[c].want_frames, &f2, &d2);
		CHECK_EQ(f2, cases[c].want_frames);
		CHECK_EQ(d2, 0);
		/* a reader opened at the head sees nothing, then only new frames */
		struct shadowd_ring *r3;
		CHECK_EQ(shadowd_ring_open(path, 32, 0, NULL, &r3), 0);
		CHECK_EQ(shadowd_ring_poll(r3), 0);
		write_n(w, cases[c].written, 2);
		drain(r3, cases[c].written, &f2, &d2);
		CHECK_EQ(f2, 2);
		shadowd_ring_close(r3);
		shadowd_ring_close(r2);
		shadowd_ring_close(r);
		shadowd_ring_close(w);
	}
	return T_PASS;
}
