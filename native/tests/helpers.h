/*
 * helpers.h: shared scaffolding of the native/tests programs (liburing's test/helpers.h).
 * Each test is one program per behaviour: exit T_PASS (0), T_FAIL (1) or T_SKIP (77).
 * Segments are created under $TMPDIR (default /tmp) and removed at exit.
 */
#ifndef SHADOWD_TEST_HELPERS_H
#define SHADOWD_TEST_HELPERS_H

#define _GNU_SOURCE
#include "shadowd/ring.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define T_PASS 0
#define T_FAIL 1
#define T_SKIP 77

#define CHECK(cond)                                                                         \
	do {                                                                                \
		if (!(cond)) {                                                              \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
			exit(T_FAIL);                                                       \
		}                                                                           \
	} while (0)

#define CHECK_EQ(a, b)                                                                      \
	do {                                                                                \
		long long va_ = (long long)(a), vb_ = (long long)(b);                        \
		if (va_ != vb_) {                                                           \
			fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__,      \
				__LINE__, #a, va_, #b, vb_);                                \
			exit(T_FAIL);                                                       \
		}                                                                           \
	} while (0)

static char t_path_buf[512];

static void t_cleanup(void) { unlink(t_path_buf); }

/* A fresh segment path for this test process, removed at exit. */
static inline const char *t_segment_path(const char *tag)
{
	const char *dir = getenv("TMPDIR");
	snprintf(t_path_buf, sizeof(t_path_buf), "%s/shadowd-test-%s-%d", dir && *dir ? dir : "/tmp", tag,
		 (int)getpid());
	unlink(t_path_buf);
	static int registered;
	if (!registered++)
		atexit(t_cleanup);
	return t_path_buf;
}

static inline int64_t t_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Payload pattern: every 8-byte word of frame `seq` is seq ^ (word index * golden). */
static inline void t_fill(void *buf, uint32_t len, uint64_t seq)
{
	unsigned char *b = buf;
	for (uint32_t i = 0; i * 8 + 8 <= len; i++) {
		uint64_t w = seq ^ (i * 0x9E3779B97F4A7C15ULL);
		memcpy(b + i * 8, &w, 8);
	}
}

/* Returns the seq the frame carries, or UINT64_MAX when its words disagree (torn). */
static inline uint64_t t_verify(const void *buf, uint32_t len)
{
	const unsigned char *b = buf;
	uint64_t seq;
	memcpy(&seq, b, 8);
	for (uint32_t i = 1; i * 8 + 8 <= len; i++) {
		uint64_t w;
		memcpy(&w, b + i * 8, 8);
		if (w != (seq ^ (i * 0x9E3779B97F4A7C15ULL)))
			return UINT64_MAX;
	}
	return seq;
}

#endif
