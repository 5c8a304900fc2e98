/* wait_for(k): a reader sleeping for the k-th next frame is not returned by the frames before
 * it (each one's publish wakes it inside the call), returns once the k-th is published, at once
 * when k frames are already unread, and times out when they do not come. */
#include "helpers.h"

#include <pthread.h>

static struct shadowd_ring *w;

static void *writer(void *arg)
{
	(void)arg;
	unsigned char buf[16] = {0};
	for (int i = 0; i < 3; i++) {
		usleep(20000); /* 20 ms apart: frames at ~20, ~40, ~60 ms */
		if (shadowd_ring_write(w, buf, 16, i) != 0)
			return (void *)1;
	}
	return NULL;
}

int main(void)
{
	const char *path = t_segment_path("waitfor");
	struct shadowd_ring *r;
	CHECK_EQ(shadowd_ring_create(path, 16, 8, 0, 0, &w), 0);
	CHECK_EQ(shadowd_ring_open(path, 16, 0, NULL, &r), 0);
	CHECK_EQ(shadowd_ring_wait_for(r, 0, 0), 1);
	CHECK_EQ(shadowd_ring_wait_for(r, 2, 0), 0);
	int64_t t0 = t_now_ns();
	CHECK_EQ(shadowd_ring_wait_for(r, 2, 20000000), 0); /* 20 ms timeout, nothing written */
	CHECK(t_now_ns() - t0 >= 20000000);

	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, writer, NULL), 0);
	t0 = t_now_ns();
	CHECK_EQ(shadowd_ring_wait_for(r, 3, 10000000000LL), 1); /* through frames 1 and 2 */
	int64_t waited = t_now_ns() - t0;
	void *ret;
	CHECK_EQ(pthread_join(th, &ret), 0);
	CHECK(ret == NULL);
	CHECK(waited >= 55000000 && waited < 5000000000LL); /* not before the third frame (~60 ms) */
	struct shadowd_ring_stats st;
	CHECK_EQ(shadowd_ring_stats(r, &st), 0);
	CHECK_EQ(st.frames, 0); /* nothing read yet: three unread */
	CHECK_EQ(shadowd_ring_wait_for(r, 3, 0), 1);
	CHECK_EQ(shadowd_ring_wait_for(r, 4, 0), 0);
	unsigned char out[16];
	CHECK_EQ(shadowd_ring_read(r, out, 16, NULL, NULL, NULL), 1);
	CHECK_EQ(shadowd_ring_wait_for(r, 2, 0), 1);
	CHECK_EQ(shadowd_ring_wait_for(r, 3, 0), 0);
	CHECK_EQ(shadowd_ring_wait_for(NULL, 2, 0), -EINVAL);
	CHECK_EQ(shadowd_ring_wait_for(w, 2, 0), -EPERM);
	shadowd_ring_close(r);
	shadowd_ring_close(w);
	return T_PASS;
}
