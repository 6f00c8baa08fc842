/* nmloop: the minimal C loop the kernel benchmark compares the library's batch path with.
 * Built by ci/kernel-bench.sh on the host against ../shared/netmap-guest (not part of the
 * crate's build). Per packet: TX copies a template of the frame length into the slot's
 * buffer; RX reads the first 8 bytes of the frame. One sync per burst of up to 512 slots.
 * RX stops after COUNT packets or 1 s without traffic once the first packet came (a VALE
 * switch drops what a full receiver cannot take); its rate runs from the first packet to the
 * last.
 *
 *   nmloop tx|rx PORT COUNT LEN
 * Prints "nmloop tx: N packets in T s, X Mpps, S syscalls".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <time.h>
#include <sys/ioctl.h>
#define NETMAP_WITH_LIBS
#include <libnetmap.h>

#define BURST 512

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: nmloop tx|rx PORT COUNT LEN\n");
		return 2;
	}
	int tx = strcmp(argv[1], "tx") == 0;
	uint64_t count = strtoull(argv[3], NULL, 10), done = 0, syscalls = 0, sink = 0;
	unsigned len = atoi(argv[4]);
	struct nmport_d *d = nmport_open(argv[2]);
	if (d == NULL) {
		perror(argv[2]);
		return 1;
	}
	struct netmap_ring *ring = tx ? NETMAP_TXRING(d->nifp, d->first_tx_ring)
				      : NETMAP_RXRING(d->nifp, d->first_rx_ring);
	unsigned char tmpl[2048];
	for (unsigned i = 0; i < sizeof(tmpl); i++)
		tmpl[i] = (unsigned char)i;
	memset(tmpl, 0xff, 6);
	struct pollfd pfd = { .fd = d->fd, .events = tx ? POLLOUT : POLLIN };
	double t0 = 0, t1 = 0;
	while (done < count) {
		unsigned n = nm_ring_space(ring);
		if (n == 0) {
			int r = poll(&pfd, 1, 1000);
			syscalls++;
			if (r == 0 && !tx && done > 0)
				break;
			continue;
		}
		if (t0 == 0)
			t0 = now();
		if (n > BURST)
			n = BURST;
		if (n > count - done)
			n = count - done;
		uint32_t cur = ring->cur;
		for (unsigned i = 0; i < n; i++) {
			struct netmap_slot *s = &ring->slot[cur];
			char *buf = NETMAP_BUF(ring, s->buf_idx);
			if (tx) {
				memcpy(buf, tmpl, len);
				s->len = len;
			} else {
				uint64_t v;
				memcpy(&v, buf, 8);
				sink += v + s->len;
			}
			cur = nm_ring_next(ring, cur);
		}
		ring->head = ring->cur = cur;
		done += n;
		ioctl(d->fd, tx ? NIOCTXSYNC : NIOCRXSYNC, NULL);
		syscalls++;
		if (!tx)
			t1 = now();
	}
	if (tx) /* wait until the peer took everything */
		while (nm_tx_pending(ring)) {
			ioctl(d->fd, NIOCTXSYNC, NULL);
			syscalls++;
		}
	double t = (tx ? now() : t1) - t0;
	printf("nmloop %s: %llu packets in %.3f s, %.3f Mpps, %llu syscalls (%llu)\n", argv[1],
	       (unsigned long long)done, t, done / t / 1e6, (unsigned long long)syscalls,
	       (unsigned long long)(sink & 1));
	nmport_close(d);
	return 0;
}
