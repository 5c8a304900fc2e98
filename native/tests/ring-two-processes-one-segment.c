/* Two processes on one segment: a forked writer streams frames, the parent reads them with
 * wait()/read_batch; what it sees is an in-order subsequence with every gap reported as
 * dropped, and it ends exactly at the last frame. */
#include "helpers.h"

#include <sys/wait.h>

#define FRAMES 200000ULL

int main(void)
{
	const char *path = t_segment_path("twoproc");
	struct shadowd_ring *w0;
	/* create first so the reader can open before the child writes */
	CHECK_EQ(shadowd_ring_create(path, 128, 1024, 0, 0, &w0), 0);
	shadowd_ring_close(w0);
	struct shadowd_ring *r;
	CHECK_EQ(shadowd_ring_open(path, 128, 0, NULL, &r), 0);
	pid_t child = fork();
	CHECK(child >= 0);
	if (child == 0) {
		struct shadowd_ring *w;
		if (shadowd_ring_create(path, 128, 1024, 0, 0, &w) != 0)
			_exit(3);
		unsigned char buf[128];
		for (uint64_t i = 0; i < FRAMES; i++) {
			t_fill(buf, 128, i);
			if (shadowd_ring_write(w, buf, 128, (int64_t)i) != 0)
				_exit(4);
			if ((i & 4095) == 0)
				usleep(200); /* let the reader fall asleep sometimes */
		}
		shadowd_ring_close(w);
		_exit(0);
	}
	static unsigned char out[256 * 128];
	uint64_t next = 0, got = 0, dropped = 0;
	while (next < FRAMES) {
		int ready = shadowd_ring_wait(r, 5000000000LL);
		CHECK_EQ(ready, 1);
		uint64_t d;
		int n = shadowd_ring_read_batch(r, out, 128, 256, NULL, NULL, &d);
		CHECK(n >= 0);
		dropped += d;
		uint64_t gaps = 0; /* drops may fall anywhere in the batch; they must add up */
		for (int i = 0; i < n; i++) {
			uint64_t seq = t_verify(out + i * 128, 128);
			CHECK(seq != UINT64_MAX && seq >= next);
			gaps += seq - next;
			next = seq + 1;
		}
		CHECK(gaps <= d);
		next += d - gaps;
		got += (uint64_t)n;
	}
	CHECK_EQ(got + dropped, FRAMES);
	int status;
	CHECK_EQ(waitpid(child, &status, 0), child);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_EQ(shadowd_ring_writer_alive(r), 0);
	fprintf(stderr, "two processes: %llu frames read, %llu dropped\n", (unsigned long long)got,
		(unsigned long long)dropped);
	shadowd_ring_close(r);
	return T_PASS;
}
