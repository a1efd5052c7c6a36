/*
 * vub-state: the backend's half of the vhost-user device state transfer
 * (VHOST_USER_PROTOCOL_F_DEVICE_STATE: SET_DEVICE_STATE_FD, then
 * CHECK_DEVICE_STATE), which carries the balloon's page set and the
 * operator's hold from the source's daemon to the destination's.
 *
 * The channel is a pipe QEMU hands over; QEMU reads or writes its other
 * end on its own main thread, during the migration's downtime. A thread of
 * ours serves the pipe, so the daemon's event loop (which serves other VMs)
 * never waits on it: saving, it writes the bytes the daemon gave it and
 * closes the pipe (QEMU's end of file); loading, it reads until QEMU closes
 * its end, at most VUB_STATE_MAX bytes. CHECK_DEVICE_STATE then asks how it
 * went; QEMU sends it only after the end of file, so the thread is done or
 * about to be, and the shim waits for it at most VUB_STATE_CHECK_MS.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VUB_STATE_H
#define VUB_STATE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* Protocol numbers after QEMU 8.2's; libvhost-user 7.2 does not know them. */
#define VUB_PROTOCOL_F_DEVICE_STATE 19
#define VUB_USER_SET_DEVICE_STATE_FD 42
#define VUB_USER_CHECK_DEVICE_STATE 43
/* The vhost-user protocol version in every header (libvhost-user keeps its own private). */
#define VUB_USER_VERSION 1u

#define VUB_STATE_SAVE 0
#define VUB_STATE_LOAD 1

/* 8 million page runs (device-state.ts): a 32 GiB balloon of single pages; Linux's are a few runs. */
#define VUB_STATE_MAX (64u << 20)
/* CHECK_DEVICE_STATE waits this long for the thread, then says "failed". */
#define VUB_STATE_CHECK_MS 500

typedef struct vub_state_xfer {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    int thread_live;      /* a thread to join */
    int dir;              /* VUB_STATE_SAVE / _LOAD, or -1: no transfer */
    int fd;               /* our end of the pipe, or -1 */
    int waiting_save;     /* SAVE: the daemon has not given its bytes yet */
    int done;             /* the thread has finished */
    int err;              /* 0, or the errno that ended it (EFBIG: too large) */
    int abandon;          /* the thread is to stop (reset, free) */
    uint8_t *buf;
    size_t len, cap;
} vub_state_xfer;

void vub_state_init(vub_state_xfer *x);
/* Stop any transfer: the thread told to stop and joined, the pipe closed. */
void vub_state_reset(vub_state_xfer *x);
void vub_state_destroy(vub_state_xfer *x);

/*
 * SET_DEVICE_STATE_FD: start a transfer over fd (always consumed). LOAD
 * starts the reader; SAVE waits for vub_state_give(). 0, or an errno.
 */
int vub_state_begin(vub_state_xfer *x, int dir, int fd);
/* SAVE: the bytes to send (copied); failed != 0 sends nothing and fails the check. */
int vub_state_give(vub_state_xfer *x, const void *buf, size_t len, int failed);
/* CHECK_DEVICE_STATE: wait (bounded) for the thread; 0 if the transfer was whole, else an errno. */
int vub_state_finish(vub_state_xfer *x);
/* LOAD, after a successful finish: the bytes read (owned by x until reset). */
const uint8_t *vub_state_loaded(vub_state_xfer *x, size_t *len);

#endif
