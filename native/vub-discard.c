/*
 * vub-discard: see vub-discard.h. Our own code.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "vub-discard.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

void vub_discarder_init(vub_discarder *q, VuDev *vu)
{
    pthread_mutexattr_t pi;

    memset(q, 0, sizeof(*q));
    q->vu = vu;
    q->done_fd = -1;
    /* The nice-10 thread holds both: lend it the waiter's priority (see header). */
    pthread_mutexattr_init(&pi);
    pthread_mutexattr_setprotocol(&pi, PTHREAD_PRIO_INHERIT);
    pthread_mutex_init(&q->lock, &pi);
    pthread_mutex_init(&q->map_lock, &pi);
    pthread_mutexattr_destroy(&pi);
    pthread_cond_init(&q->cond, NULL);
}

void vub_log_range(VuDev *vu, uint64_t gpa, uint64_t len)
{
    if (!(vu->features & (1ULL << VHOST_F_LOG_ALL)) || !vu->log_table || len == 0) {
        return;
    }
    /* The firewall checked that the log covers every region. */
    for (uint64_t page = gpa / VHOST_LOG_PAGE; page <= (gpa + len - 1) / VHOST_LOG_PAGE; page++) {
        if (page / 8 >= vu->log_size) {
            return;
        }
        __atomic_fetch_or(&vu->log_table[page / 8], (uint8_t)(1u << (page % 8)), __ATOMIC_RELAXED);
    }
}

/* Discard one chunk; the caller holds map_lock. 0 or -errno. */
static int discard_chunk(VuDev *vu, uint64_t gpa, uint64_t len)
{
    /* All of it must be RAM in the current table, or none is touched. */
    for (uint64_t at = gpa; at < gpa + len;) {
        uint64_t plen = gpa + len - at;
        if (!vu_gpa_to_va(vu, &plen, at) || plen == 0) {
            return -EFAULT;
        }
        at += plen;
    }
    for (uint64_t at = gpa; at < gpa + len;) {
        uint64_t plen = gpa + len - at;
        void *va = vu_gpa_to_va(vu, &plen, at);
        if (madvise(va, plen, MADV_REMOVE) < 0) {
            return -errno;
        }
        vub_log_range(vu, at, plen);
        at += plen;
    }
    return 0;
}

/*
 * Skip ranges that cancellation emptied; when none is left the job is done:
 * say so, also when deflates emptied it before the thread started on it.
 * Lock held.
 */
static void advance(vub_discarder *q)
{
    while (q->next < q->n && q->job[q->next].len == 0) {
        q->next++;
    }
    if (q->n > 0 && q->next >= q->n) {
        uint64_t one = 1;
        q->n = q->next = 0;
        if (write(q->done_fd, &one, sizeof(one)) < 0) {
            /* eventfd counter saturated: the daemon is reading it anyway */
        }
    }
}

static void *worker(void *arg)
{
    vub_discarder *q = arg;
    /*
     * Background work: let the event loop (and the guest's vCPU threads) run
     * first when the cores are busy. Nice 10 still gets ~10% of a contended
     * core, so pages are freed on a loaded host too; it measured the same
     * ack times as nice 19 and 20-25% better than nice 0 (bench/inflate.ts).
     * Never a real-time policy, even if the daemon was started under one
     * (chrt, systemd CPUSchedulingPolicy=): a long discard must not hold a
     * core against the guest's vCPUs.
     */
    struct sched_param normal = { .sched_priority = 0 };
    pthread_setschedparam(pthread_self(), SCHED_OTHER, &normal);
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), VUB_DISCARD_NICE);

    pthread_mutex_lock(&q->lock);
    for (;;) {
        advance(q);
        while (!q->stop && (q->suspended || q->next >= q->n || q->waiters || q->hold)) {
            pthread_cond_wait(&q->cond, &q->lock);
            advance(q);
        }
        if (q->stop) {
            break;
        }
        vub_range *r = &q->job[q->next];
        uint64_t gen = q->generation;
        q->cur_gpa = r->gpa;
        q->cur_len = r->len < VUB_DISCARD_CHUNK ? r->len : VUB_DISCARD_CHUNK;
        q->busy = 1;
        pthread_mutex_unlock(&q->lock);

        pthread_mutex_lock(&q->map_lock);
        /*
         * A queue stop handled while we waited for map_lock suspended the
         * job (under map_lock): the chunk may be the guest's again.
         */
        pthread_mutex_lock(&q->lock);
        int current = q->generation == gen;
        pthread_mutex_unlock(&q->lock);
        int ret = current ? discard_chunk(q->vu, q->cur_gpa, q->cur_len) : 0;
        pthread_mutex_unlock(&q->map_lock);

        pthread_mutex_lock(&q->lock);
        if (current) {
            q->calls++;
            if (ret < 0) {
                q->failures++;
                q->fail_gpa = q->cur_gpa;
                q->fail_len = q->cur_len;
                q->fail_errno = -ret;
            } else {
                q->bytes += q->cur_len;
            }
        }
        /*
         * A cancel never cuts into the chunk under way (it waits for it), so
         * the chunk is still the head of job[next] unless a drop emptied the
         * job meanwhile. A skipped chunk stays in the job.
         */
        if (current && q->next < q->n && q->job[q->next].gpa == q->cur_gpa) {
            q->job[q->next].gpa += q->cur_len;
            q->job[q->next].len -= q->cur_len;
        }
        q->busy = 0;
        if (q->hold) {
            uint64_t one = 1;
            if (write(q->done_fd, &one, sizeof(one)) < 0) {
                /* saturated: the daemon is reading it anyway */
            }
        }
        advance(q);
        pthread_cond_broadcast(&q->cond);
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

int vub_discarder_start(vub_discarder *q)
{
    if (q->running) {
        return q->done_fd;
    }
    q->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (q->done_fd < 0) {
        return -errno;
    }
    q->stop = 0;
    int err = pthread_create(&q->thread, NULL, worker, q);
    if (err) {
        close(q->done_fd);
        q->done_fd = -1;
        return -err;
    }
    q->running = 1;
    return q->done_fd;
}

void vub_discarder_stop(vub_discarder *q)
{
    if (q->running) {
        pthread_mutex_lock(&q->lock);
        q->stop = 1;
        q->n = q->next = 0;
        pthread_cond_broadcast(&q->cond);
        pthread_mutex_unlock(&q->lock);
        pthread_join(q->thread, NULL);
        q->running = 0;
        close(q->done_fd);
        q->done_fd = -1;
    }
    free(q->job);
    q->job = NULL;
    q->cap = 0;
}

/* Room for cap ranges; lock held. */
static int grow(vub_discarder *q, uint32_t cap)
{
    vub_range *job = realloc(q->job, (size_t)cap * sizeof(*job));

    if (!job) {
        return 0;
    }
    q->job = job;
    q->cap = cap;
    return 1;
}

static int overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

/*
 * Wait until no chunk overlapping [gpa, gpa+len) is under way (len 0: no
 * chunk at all). The thread takes no next chunk meanwhile. Lock held.
 */
static void wait_chunk(vub_discarder *q, uint64_t gpa, uint64_t len)
{
    q->waiters++;
    while (q->busy && (len == 0 || overlaps(q->cur_gpa, q->cur_len, gpa, len))) {
        pthread_cond_wait(&q->cond, &q->lock);
    }
    q->waiters--;
    if (q->waiters == 0) {
        pthread_cond_broadcast(&q->cond);   /* the thread may go on */
    }
}

int vub_discarder_submit(vub_discarder *q, const uint64_t *pairs, uint32_t n)
{
    int ret = 0;

    if (!q->running) {
        return -ENOTCONN;
    }
    pthread_mutex_lock(&q->lock);
    if (q->next < q->n) {
        ret = -EBUSY;
    } else if (n > q->cap && !grow(q, n * 2)) {
        ret = -ENOMEM;
    } else {
        for (uint32_t i = 0; i < n; i++) {
            q->job[i].gpa = pairs[2 * i];
            q->job[i].len = pairs[2 * i + 1];
        }
        q->n = n;
        q->next = 0;
        q->hold = 0;   /* a try_cancel on the last job that was never retried */
        pthread_cond_broadcast(&q->cond);
    }
    pthread_mutex_unlock(&q->lock);
    return ret;
}

/* Cut [gpa, gpa+len) out of the job; no chunk under way overlaps it. Lock held. */
static int64_t cut(vub_discarder *q, uint64_t gpa, uint64_t len);

int64_t vub_discarder_cancel(vub_discarder *q, uint64_t gpa, uint64_t len)
{
    int64_t removed;

    pthread_mutex_lock(&q->lock);
    wait_chunk(q, gpa, len);
    removed = cut(q, gpa, len);
    pthread_mutex_unlock(&q->lock);
    return removed;
}

int64_t vub_discarder_try_cancel(vub_discarder *q, uint64_t gpa, uint64_t len)
{
    int64_t removed;

    pthread_mutex_lock(&q->lock);
    if (q->busy && overlaps(q->cur_gpa, q->cur_len, gpa, len)) {
        q->hold = 1;
        pthread_mutex_unlock(&q->lock);
        return -EBUSY;
    }
    removed = cut(q, gpa, len);
    if (q->hold) {
        q->hold = 0;
        pthread_cond_broadcast(&q->cond);   /* the thread may go on */
    }
    pthread_mutex_unlock(&q->lock);
    return removed;
}

static int64_t cut(vub_discarder *q, uint64_t gpa, uint64_t len)
{
    int64_t removed = 0;
    uint64_t end = gpa + len;

    for (uint32_t i = q->next; i < q->n; i++) {
        vub_range *r = &q->job[i];
        uint64_t rend = r->gpa + r->len;
        if (r->len == 0 || !overlaps(r->gpa, r->len, gpa, len)) {
            continue;
        }
        if (gpa <= r->gpa && end >= rend) {            /* all of it */
            removed += r->len;
            r->len = 0;
        } else if (gpa <= r->gpa) {                    /* its head */
            removed += end - r->gpa;
            r->len = rend - end;
            r->gpa = end;
        } else if (end >= rend) {                      /* its tail */
            removed += rend - gpa;
            r->len = gpa - r->gpa;
        } else {                                       /* its middle */
            if (q->n == q->cap && !grow(q, q->cap * 2)) {
                /* Cannot split: give up the whole range rather than discard a used page. */
                removed += r->len;
                r->len = 0;
                continue;
            }
            r = &q->job[i];
            q->job[q->n].gpa = end;
            q->job[q->n].len = rend - end;
            q->n++;
            removed += len;
            r->len = gpa - r->gpa;
        }
    }
    return removed;
}

int64_t vub_discarder_drop(vub_discarder *q)
{
    int64_t dropped = 0;

    pthread_mutex_lock(&q->lock);
    wait_chunk(q, 0, 0);
    for (uint32_t i = q->next; i < q->n; i++) {
        dropped += q->job[i].len;
    }
    q->n = q->next = 0;
    q->generation++;
    q->hold = 0;
    q->suspended = 0; /* ready for the next job */
    pthread_mutex_unlock(&q->lock);
    return dropped;
}

void vub_discarder_suspend(vub_discarder *q)
{
    pthread_mutex_lock(&q->lock);
    q->suspended = 1;
    q->generation++;
    pthread_mutex_unlock(&q->lock);
}

void vub_discarder_resume(vub_discarder *q)
{
    pthread_mutex_lock(&q->lock);
    q->suspended = 0;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
}

uint32_t vub_discarder_export(vub_discarder *q, uint64_t *pairs, uint32_t max)
{
    uint32_t k = 0;

    pthread_mutex_lock(&q->lock);
    wait_chunk(q, 0, 0);
    for (uint32_t i = q->next; i < q->n; i++) {
        if (q->job[i].len == 0) {
            continue;
        }
        if (k < max) {
            pairs[2 * k] = q->job[i].gpa;
            pairs[2 * k + 1] = q->job[i].len;
        }
        k++;
    }
    pthread_mutex_unlock(&q->lock);
    return k;
}

int vub_discarder_collect(vub_discarder *q, uint64_t out[6])
{
    int pending;

    pthread_mutex_lock(&q->lock);
    out[0] = q->bytes;
    out[1] = q->calls;
    out[2] = q->failures;
    out[3] = q->fail_gpa;
    out[4] = q->fail_len;
    out[5] = (uint64_t)q->fail_errno;
    q->bytes = q->calls = q->failures = 0;
    q->fail_errno = 0;
    pending = q->next < q->n || q->busy;
    pthread_mutex_unlock(&q->lock);
    return pending;
}

void vub_discarder_wait(vub_discarder *q)
{
    pthread_mutex_lock(&q->lock);
    if (q->hold) {
        q->hold = 0;   /* whoever tried to cancel retries after: the job is done then */
        pthread_cond_broadcast(&q->cond);
    }
    while (q->running && !q->suspended && (q->next < q->n || q->busy)) {
        pthread_cond_wait(&q->cond, &q->lock);
    }
    pthread_mutex_unlock(&q->lock);
}
