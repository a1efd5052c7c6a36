/*
 * vub-discard: discards inflated balloon pages on a thread of its own, so
 * that the event loop acknowledges the next buffer while the kernel frees the
 * last one (freeing 1 GiB of shmem takes ~280 ms here).
 *
 * One job at a time: a list of guest-physical byte ranges handed over by the
 * daemon when the previous job is done; the thread discards them in chunks of
 * at most VUB_DISCARD_CHUNK and writes an eventfd when the list is done.
 * Pages the guest takes back (deflate) are cut out of the job before the
 * acknowledgement goes out; a chunk already under way is waited for, that
 * chunk only: the thread starts no next chunk while someone waits, so the
 * event loop never waits longer than one chunk (it used to wait for the
 * whole job when the cut range covered the chunks that followed).
 *
 * The memory table may only change under map_lock: the thread holds it while
 * it translates and discards one chunk, the shim holds it while libvhost-user
 * handles any message that could map or unmap guest RAM.
 *
 * A queue stop (GET_VRING_BASE: VM pause or device reset) suspends the job
 * from inside libvhost-user's callback, before the reply goes out: a chunk
 * the thread took earlier is re-checked against the generation under
 * map_lock and left alone. After a reset the pages are the guest's again;
 * the daemon then drops the job, after a pause it resumes it.
 *
 * Both mutexes use priority inheritance: the thread runs at nice 10, and a
 * daemon run under SCHED_FIFO must not wait behind it at that priority.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VUB_DISCARD_H
#define VUB_DISCARD_H

#include <pthread.h>
#include <stdint.h>

#include "libvhost-user.h"

/* Longest madvise() of one chunk: bounds every wait on the thread (~0.6 ms). */
#define VUB_DISCARD_CHUNK (2u << 20)
/* The thread's nice value (see worker()). */
#define VUB_DISCARD_NICE 10

typedef struct vub_range {
    uint64_t gpa;
    uint64_t len;
} vub_range;

typedef struct vub_discarder {
    VuDev *vu;
    pthread_t thread;
    int running;
    int stop;
    int done_fd;               /* eventfd: written when a job is finished */
    pthread_mutex_t lock;      /* everything below */
    pthread_cond_t cond;       /* job arrived / chunk finished */
    pthread_mutex_t map_lock;  /* guest RAM mappings stay put while held */
    vub_range *job;
    uint32_t n, next, cap;
    int busy;                  /* a chunk [cur_gpa, +cur_len) is being discarded */
    uint64_t cur_gpa, cur_len;
    int waiters;               /* cancel/drop/export waiting for the chunk under way:
                                  no next chunk starts until they had their turn */
    int hold;                  /* a try_cancel found its range under way: no next chunk,
                                  done_fd written when this one is finished */
    int suspended;             /* queue stopped: take no chunk until resumed */
    uint64_t generation;       /* bumped by every suspend and drop */
    /* Totals since the last vub_discarder_collect(). */
    uint64_t bytes, calls, failures;
    uint64_t fail_gpa, fail_len;
    int fail_errno;
} vub_discarder;

void vub_discarder_init(vub_discarder *q, VuDev *vu);
/*
 * Mark guest RAM [gpa, gpa+len) dirty in the vhost log while migration logs
 * (VHOST_F_LOG_ALL with a log set): a discard zeroes it. Call after the
 * discard, with the mappings stable (map_lock or the dispatching thread).
 */
void vub_log_range(VuDev *vu, uint64_t gpa, uint64_t len);
int vub_discarder_start(vub_discarder *q);          /* done fd or -errno */
void vub_discarder_stop(vub_discarder *q);          /* drops the job, joins */
int vub_discarder_submit(vub_discarder *q, const uint64_t *pairs, uint32_t n);
int64_t vub_discarder_cancel(vub_discarder *q, uint64_t gpa, uint64_t len);
/*
 * cancel() that never waits: -EBUSY while the chunk under way overlaps the
 * range. The thread then starts no next chunk and writes done_fd when this
 * one is finished; the next try goes through.
 */
int64_t vub_discarder_try_cancel(vub_discarder *q, uint64_t gpa, uint64_t len);
int64_t vub_discarder_drop(vub_discarder *q);
/* Called with map_lock held (queue-stop callback): no chunk starts or finishes after it. */
void vub_discarder_suspend(vub_discarder *q);
void vub_discarder_resume(vub_discarder *q);
/* Copy what is left of the job as {gpa, len} pairs (at most max); returns the count it needs. */
uint32_t vub_discarder_export(vub_discarder *q, uint64_t *pairs, uint32_t max);
int vub_discarder_collect(vub_discarder *q, uint64_t out[6]);
void vub_discarder_wait(vub_discarder *q);

#endif
