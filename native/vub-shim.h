/*
 * vub-shim: the small C layer between libvhost-user and the TypeScript
 * daemon (called through koffi). It owns the VuDev and its callbacks so that
 * C never calls back into JavaScript: every callback libvhost-user makes is
 * recorded as an event in a per-device queue that the daemon drains after each
 * call into the shim. Config space lives here too, so GET_CONFIG is answered
 * without a round trip to JavaScript.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VUB_SHIM_H
#define VUB_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct vub_dev vub_dev;

/* Event kinds recorded by the callbacks (vub_event.kind). */
enum {
    VUB_EV_SET_WATCH = 1,     /* a = fd, b = condition (VU_WATCH_* bits)  */
    VUB_EV_REMOVE_WATCH = 2,  /* a = fd                                   */
    VUB_EV_QUEUE_STARTED = 3, /* a = queue index, b = started (0/1)       */
    VUB_EV_KICK = 4,          /* a = queue index                          */
    VUB_EV_SET_FEATURES = 5,  /* u = negotiated virtio features           */
    VUB_EV_SET_CONFIG = 6,    /* a = offset, b = size (config updated)    */
    VUB_EV_PANIC = 7,         /* message in vub_last_panic()              */
    VUB_EV_OVERFLOW = 8,      /* events were lost: a = how many           */
    VUB_EV_STATE_SAVE = 9,    /* SET_DEVICE_STATE_FD (SAVE): vub_state_save() */
    VUB_EV_STATE_LOADED = 10, /* CHECK_DEVICE_STATE (LOAD): u = bytes; take them, then vub_state_reply() */
    VUB_EV_STATE_FAILED = 11, /* a transfer failed: a = direction, b = errno */
};

typedef struct vub_event {
    int32_t kind;
    int32_t a;
    int32_t b;
    int32_t pad;
    uint64_t u;
} vub_event;

/* Lifecycle. max_queues is what VuDev allocates; config_len <= 256. */
vub_dev *vub_new(int sock, uint16_t max_queues, uint64_t device_features,
                 uint64_t extra_protocol_features, uint32_t config_len);
void vub_free(vub_dev *d);               /* vu_deinit + free; closes sock */
int vub_dispatch(vub_dev *d);            /* 1 ok, 0: peer gone or broken */
/*
 * The daemon's dispatch: one message, only if handling it cannot block the
 * caller. libvhost-user reads a whole message with blocking reads and writes
 * its reply retrying EAGAIN forever, so the whole message must be in the
 * socket (FIONREAD, the header peeked without taking its fds) and the send
 * queue must have room for a reply (SIOCOUTQ against SO_SNDBUF). Returns
 * VUB_DISPATCH_OK or _GONE as vub_dispatch() does, _IDLE when no complete
 * message waits (a partial one stays in the socket; a peer that shut down
 * in the middle of one is _GONE), _WAIT_OUT when the frontend has not read
 * its replies: call again once the socket is writable (EPOLLOUT).
 */
enum { VUB_DISPATCH_GONE = 0, VUB_DISPATCH_OK = 1, VUB_DISPATCH_IDLE = 2, VUB_DISPATCH_WAIT_OUT = 3 };
int vub_dispatch_ready(vub_dev *d);
void vub_fire_watch(vub_dev *d, int fd, int condition);
/*
 * The daemon's epoll set: a watch libvhost-user removes leaves it at once,
 * before libvhost-user closes the fd (-1: the caller removes watches itself).
 */
void vub_set_epoll_fd(vub_dev *d, int epfd);
int vub_next_events(vub_dev *d, vub_event *out, int max);  /* drains */
const char *vub_last_panic(vub_dev *d);

/* Negotiated state. */
uint64_t vub_features(vub_dev *d);
uint64_t vub_protocol_features(vub_dev *d);
int vub_broken(vub_dev *d);

/* Config space (device-side copy). */
void vub_config_write(vub_dev *d, uint32_t off, const void *src, uint32_t len);
void vub_config_read(vub_dev *d, uint32_t off, void *dst, uint32_t len);
/*
 * Send VHOST_USER_SLAVE_CONFIG_CHANGE_MSG on the backend channel without
 * waiting for a reply. 0 sent; 1 queued: the channel is full, the shim asks
 * for a POLLOUT watch on it (a VUB_EV_SET_WATCH event) and sends the rest
 * from vub_fire_watch(), never leaving half a message; -ENOTCONN without a
 * channel, -errno if it failed. Changes while one is queued fold into it.
 */
int vub_config_change(vub_dev *d);
/* 1 while a change is queued; out = {messages sent, sends that had to wait}. */
int vub_config_change_pending(vub_dev *d, uint64_t out[2]);

/* Queues. */
void vub_queue_enable_handler(vub_dev *d, int qidx, int enable);
/*
 * Pop one element. On success returns an opaque element pointer and fills
 * hdr[0] = index, hdr[1] = out_num, hdr[2] = in_num, and iov (capacity
 * max_iov pairs) with {host address, length} for the out then the in
 * scatter-gather entries (truncated to max_iov; hdr tells the real counts).
 * NULL when the queue is empty, not started, or the device is broken.
 */
void *vub_pop(vub_dev *d, int qidx, uint32_t hdr[3], uint64_t *iov, uint32_t max_iov);
void vub_push(vub_dev *d, int qidx, void *elem, uint32_t len);  /* frees elem */
void vub_drop(void *elem);                                      /* free only */
void vub_notify(vub_dev *d, int qidx);
int vub_queue_started(vub_dev *d, int qidx);
/* Last used index of a queue, as libvhost-user tracks it (GET_VRING_BASE). */
uint32_t vub_queue_last_avail(vub_dev *d, int qidx);

/* Guest memory. */
uint64_t vub_gpa_to_va(vub_dev *d, uint64_t gpa, uint64_t *plen);
/* Guest RAM size covered by the memory table and number of regions. */
uint64_t vub_ram_end(vub_dev *d);
uint32_t vub_nregions(vub_dev *d);
/* Region i: gpa, size, backing page size (a hugetlbfs fd: its huge page size). 0, or -1 if out of range. */
int vub_region(vub_dev *d, uint32_t i, uint64_t out[3]);
/* Copy len bytes from a host address obtained from vub_pop/vub_gpa_to_va. */
void vub_read(uint64_t hva, void *dst, size_t len);
void vub_write(uint64_t hva, const void *src, size_t len);
/*
 * Discard [gpa, gpa+len) of guest RAM (MADV_REMOVE on the shared mapping).
 * The range is checked against the memory table first: returns the bytes
 * discarded, or -EFAULT if any part lies outside guest RAM (nothing is
 * discarded then), or -errno from madvise.
 */
int64_t vub_discard(vub_dev *d, uint64_t gpa, uint64_t len);

/*
 * Discard guest RAM given by a host address from a popped element (free page
 * reporting hands us ranges as descriptors). The range must be page-aligned
 * and wholly inside one mapped region. Returns bytes or -errno.
 */
int64_t vub_discard_hva(vub_dev *d, uint64_t hva, uint64_t len);
/* 1 if vub_discard_hva() would take [hva, hva+len) (aligned, in one region). */
int vub_hva_in_ram(vub_dev *d, uint64_t hva, uint64_t len);
/*
 * Host memory backing guest RAM: allocated bytes (st_blocks) of the regions'
 * files, each file once; -1 before a memory table (or if one cannot be read).
 */
int64_t vub_backed_bytes(vub_dev *d);
/* Backing page size of the region holding hva (see vub_region), or 0 outside guest RAM. */
uint64_t vub_hva_page(vub_dev *d, uint64_t hva);

/*
 * Background discard (deferred mode; vub-discard.h). vub_bg_start starts the
 * thread and returns an eventfd that turns readable when a job is done.
 * vub_bg_submit hands over {gpa, len} byte pairs (-EBUSY while a job runs).
 * vub_bg_cancel cuts [gpa, gpa+len) out of the job (waiting for a chunk under
 * way) and returns the bytes cut; vub_bg_drop forgets the job (bytes left).
 * vub_bg_collect reads and resets the totals: out = {bytes, calls, failures,
 * last failure gpa, len, errno}; returns 1 while a job is pending.
 * vub_bg_wait blocks until the job is done.
 */
int vub_bg_start(vub_dev *d);
int vub_bg_submit(vub_dev *d, const uint64_t *pairs, uint32_t n);
int64_t vub_bg_cancel(vub_dev *d, uint64_t gpa, uint64_t len);
/* vub_bg_cancel() that never waits: -EBUSY while the chunk under way overlaps (vub-discard.h). */
int64_t vub_bg_try_cancel(vub_dev *d, uint64_t gpa, uint64_t len);
int64_t vub_bg_drop(vub_dev *d);
int vub_bg_collect(vub_dev *d, uint64_t out[6]);
/*
 * The inflate queue's stop suspends the thread (inside libvhost-user's
 * callback, before the reply); vub_bg_resume lets it go on (a VM pause is
 * over), vub_bg_drop forgets the job (a reset). vub_bg_export copies what is
 * left of the job as {gpa, len} pairs (at most max) and returns the count.
 */
void vub_bg_resume(vub_dev *d);
uint32_t vub_bg_export(vub_dev *d, uint64_t *pairs, uint32_t max);
void vub_bg_wait(vub_dev *d);

/* Sockets and fds for the daemon and the test frontend. */
int vub_send_fds(int sock, const void *buf, size_t len, const int *fds, int nfds);
/* Returns bytes read (0 on EOF, -errno on error); *nfds gets the fd count. */
ssize_t vub_recv_fds(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds);
int vub_listen_unix(const char *path, int backlog);  /* fd or -errno */
int vub_connect_unix(const char *path);              /* fd or -errno */

/*
 * Device state transfer (migration; see vub-state.h). After
 * VUB_EV_STATE_SAVE the daemon gives the bytes to send (failed != 0: none,
 * and QEMU's check fails); after VUB_EV_STATE_LOADED it takes the bytes
 * read and answers QEMU's check. 0 / bytes, or -errno.
 */
int vub_state_save(vub_dev *d, const void *buf, size_t len, int failed);
int64_t vub_state_take(vub_dev *d, void *dst, size_t cap);
int vub_state_reply(vub_dev *d, int failed);

#endif
