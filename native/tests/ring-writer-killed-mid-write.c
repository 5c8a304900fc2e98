/* A writer SIGKILLed between reserve and commit: readers never see the half-written frame,
 * learn that the writer is dead (even before it is reaped), keep every committed frame, and
 * a restarted writer re-attaches and continues at the head. Also when the dead writer was
 * overwriting the oldest slot of a full ring: that frame counts as dropped, never as data. */
#include "helpers.h"

#include <signal.h>
#include <sys/wait.h>

static void run(const char *path, uint64_t committed_before_kill)
{
	const uint64_t cap = 8;
	unlink(path); /* fresh: the previous run's segment would be re-attached */
	int ready[2];
	CHECK_EQ(pipe(ready), 0);
	pid_t child = fork();
	CHECK(child >= 0);
	if (child == 0) {
		struct shadowd_ring *w;
		if (shadowd_ring_create(path, 64, cap, 0, 0, &w) != 0)
			_exit(3);
		unsigned char buf[64];
		for (uint64_t i = 0; i < committed_before_kill; i++) {
			t_fill(buf, 64, i);
			if (shadowd_ring_write(w, buf, 64, (int64_t)i) != 0)
				_exit(4);
		}
		void *p;
		if (shadowd_ring_reserve(w, &p) != 64)
			_exit(5);
		memset(p, 0xEE, 40); /* half a frame of garbage */
		char c = 'r';
		if (write(ready[1], &c, 1) != 1)
			_exit(6);
		for (;;)
			pause();
	}
	close(ready[1]);
	char c;
	CHECK_EQ(read(ready[0], &c, 1), 1);
	close(ready[0]);
	struct shadowd_ring *r;
	struct shadowd_ring_info oi;
	CHECK_EQ(shadowd_ring_open(path, 64, SHADOWD_RING_FROM_OLDEST, &oi, &r), 0);
	CHECK_EQ(shadowd_ring_writer_alive(r), 1);
	CHECK_EQ(kill(child, SIGKILL), 0);
	/* dead but not reaped (a zombie): already reported dead */
	for (int i = 0; i < 2000 && shadowd_ring_writer_alive(r); i++)
		usleep(1000);
	CHECK_EQ(shadowd_ring_writer_alive(r), 0);
	int status;
	CHECK_EQ(waitpid(child, &status, 0), child);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	CHECK_EQ(shadowd_ring_writer_alive(r), 0);

	unsigned char out[64];
	uint64_t got = 0, dropped = 0, next = oi.oldest, d; /* the cursor starts there */
	int rc;
	while ((rc = shadowd_ring_read(r, out, 64, NULL, NULL, &d)) == 1) {
		next += d;
		dropped += d;
		CHECK_EQ(t_verify(out, 64), next); /* never the 0xEE garbage */
		next++;
		got++;
	}
	CHECK_EQ(rc, 0);
	CHECK_EQ(shadowd_ring_wait(r, 1000000), 0); /* nothing more is coming */
	uint64_t keep = committed_before_kill < cap ? committed_before_kill : cap - 1;
	CHECK_EQ(got, keep);
	CHECK_EQ(got + dropped, committed_before_kill - oi.oldest);
	CHECK_EQ(next, committed_before_kill);

	/* a restarted producer re-attaches (the dead one's flock is gone) and goes on */
	struct shadowd_ring *w2;
	CHECK_EQ(shadowd_ring_create(path, 64, cap, 0, 0, &w2), 0);
	struct shadowd_ring_info info;
	CHECK_EQ(shadowd_ring_info(w2, &info), 0);
	CHECK(info.head == committed_before_kill);
	CHECK_EQ(info.writer_generation, 2);
	CHECK_EQ(shadowd_ring_writer_alive(r), 1);
	unsigned char buf[64];
	t_fill(buf, 64, committed_before_kill);
	CHECK_EQ(shadowd_ring_write(w2, buf, 64, 0), 0);
	CHECK_EQ(shadowd_ring_read(r, out, 64, NULL, NULL, &d), 1);
	CHECK_EQ(d, 0);
	CHECK_EQ(t_verify(out, 64), committed_before_kill);
	shadowd_ring_close(w2);
	CHECK_EQ(shadowd_ring_writer_alive(r), 0); /* closed cleanly */
	shadowd_ring_close(r);
}

int main(void)
{
	const char *path = t_segment_path("killed");
	run(path, 5);  /* ring not yet full */
	run(path, 12); /* dead writer was overwriting the oldest frame */
	return T_PASS;
}
