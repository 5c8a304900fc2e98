/*
 * producer.c: an example C producer for the `vehicle` topic, and the template for real ones.
 *
 * Writes frames of the `vehicle` topic (shadowd.core.signals.VEHICLE; the packed struct below
 * must match its dtype field for field: keep in sync, docs/ring.md shows it) into the ring
 * at PATH with the zero-copy reserve/commit API. Values are a smooth synthetic drive.
 *
 *   producer PATH [FRAMES] [RATE_HZ] [CAPACITY]
 *     PATH      segment file, e.g. /dev/shm/shadowd.vehicle
 *     FRAMES    how many frames to write (default 1000)
 *     RATE_HZ   0 = as fast as possible (default 100)
 *     CAPACITY  ring slots, a power of two (default 1024)
 * Frame i has t_ns = T0 + i * 10 ms (T0: CLOCK_MONOTONIC at start) and speed_mps = i * 0.01,
 * so a reader can check what it got. Exits 0 when all frames are written, 2 on bad usage,
 * 1 when the ring refuses (the message names the return code).
 * Build: cc -O2 -Iinclude examples/producer.c src/ring.c -o producer   (or `make examples`)
 */
#define _GNU_SOURCE
#include "shadowd/ring.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One `vehicle` frame: packed, little-endian, field order = the numpy dtype's. */
struct vehicle_frame {
	int64_t t_ns;
	float speed_mps;
	float steer_angle_deg;
	float steer_rate_dps;
	float steer_torque_driver_nm;
	float yaw_rate_rps;
	float accel_long_mps2;
	float accel_lat_mps2;
	float accel_pedal;
	uint8_t brake_pressed;
	float brake_pressure;
	int8_t gear;
	int8_t turn_signal;
	uint8_t driver_override;
	uint8_t adas_engaged;
	uint8_t adas_steering;
} __attribute__((packed));

_Static_assert(sizeof(struct vehicle_frame) == 50, "vehicle frame must match the topic dtype");

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 5) {
		fprintf(stderr, "usage: %s PATH [FRAMES] [RATE_HZ] [CAPACITY]\n", argv[0]);
		return 2;
	}
	const char *path = argv[1];
	long long frames = argc > 2 ? atoll(argv[2]) : 1000;
	double rate_hz = argc > 3 ? atof(argv[3]) : 100.0;
	unsigned long long capacity = argc > 4 ? strtoull(argv[4], NULL, 10) : 1024;
	if (frames < 0 || rate_hz < 0) {
		fprintf(stderr, "producer: FRAMES and RATE_HZ must be >= 0\n");
		return 2;
	}
	struct shadowd_ring *w;
	int rc = shadowd_ring_create(path, sizeof(struct vehicle_frame), capacity, 0, 0, &w);
	if (rc < 0) {
		fprintf(stderr, "producer: cannot create ring %s: %s (rc %d)\n", path, strerror(-rc), rc);
		return 1;
	}
	int64_t t0 = now_ns();
	for (long long i = 0; i < frames; i++) {
		void *p;
		rc = shadowd_ring_reserve(w, &p);
		if (rc < 0)
			break;
		struct vehicle_frame f;
		memset(&f, 0, sizeof(f));
		f.t_ns = t0 + i * 10000000LL;
		f.speed_mps = (float)i * 0.01f;
		f.steer_angle_deg = (float)((i % 200) - 100) * 0.1f;
		f.accel_long_mps2 = 0.5f;
		f.gear = 0;
		f.adas_engaged = (uint8_t)(i % 2);
		memcpy(p, &f, sizeof(f)); /* the slot payload is 8-byte aligned; the struct is packed */
		rc = shadowd_ring_commit(w, sizeof(f), f.t_ns);
		if (rc < 0)
			break;
		if (rate_hz > 0) {
			int64_t due = t0 + (int64_t)((double)(i + 1) * 1e9 / rate_hz);
			int64_t left = due - now_ns();
			if (left > 0) {
				struct timespec ts = {left / 1000000000, left % 1000000000};
				nanosleep(&ts, NULL);
			}
		}
	}
	shadowd_ring_close(w);
	if (rc < 0) {
		fprintf(stderr, "producer: write failed: %s (rc %d)\n", strerror(-rc), rc);
		return 1;
	}
	return 0;
}
