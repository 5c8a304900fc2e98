/* wait(): returns at once when data is there, times out when none comes, and a sleeping
 * reader is woken by a write from another thread well before its timeout. */
#include "helpers.h"

#include <pthread.h>

static struct shadowd_ring *w;

static void *late_writer(void *arg)
{
	(void)arg;
	usleep(50000);
	unsigned char buf[16] = {0};
	if (shadowd_ring_write(w, buf, 16, 1) != 0)
		return (void *)1;
	return NULL;
}

int main(void)
{
	const char *path = t_segment_path("wait");
	struct shadowd_ring *r;
	CHECK_EQ(shadowd_ring_create(path, 16, 8, 0, 0, &w), 0);
	CHECK_EQ(shadowd_ring_open(path, 16, 0, NULL, &r), 0);
	CHECK_EQ(shadowd_ring_wait(r, 0), 0);
	int64_t t0 = t_now_ns();
	CHECK_EQ(shadowd_ring_wait(r, 30000000), 0); /* 30 ms timeout */
	int64_t waited = t_now_ns() - t0;
	CHECK(waited >= 30000000 && waited < 2000000000);
	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, late_writer, NULL), 0);
	t0 = t_now_ns();
	CHECK_EQ(shadowd_ring_wait(r, 10000000000LL), 1); /* woken long before 10 s */
	waited = t_now_ns() - t0;
	void *ret;
	CHECK_EQ(pthread_join(th, &ret), 0);
	CHECK(ret == NULL);
	CHECK(waited < 5000000000LL);
	CHECK_EQ(shadowd_ring_wait(r, 0), 1); /* still ready until read */
	unsigned char out[16];
	CHECK_EQ(shadowd_ring_read(r, out, 16, NULL, NULL, NULL), 1);
	CHECK_EQ(shadowd_ring_poll(r), 0);
	shadowd_ring_close(r);
	shadowd_ring_close(w);
	return T_PASS;
}
