/*
 * vub-state: see vub-state.h. Our own code.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "vub-state.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* How often a blocked thread looks at `abandon`. */
#define POLL_MS 100

void vub_state_init(vub_state_xfer *x)
{
    memset(x, 0, sizeof(*x));
    pthread_mutex_init(&x->lock, NULL);
    pthread_cond_init(&x->cond, NULL);
    x->dir = -1;
    x->fd = -1;
}

static int stopping(vub_state_xfer *x)
{
    pthread_mutex_lock(&x->lock);
    int a = x->abandon;
    pthread_mutex_unlock(&x->lock);
    return a;
}

static void finished(vub_state_xfer *x, int err)
{
    pthread_mutex_lock(&x->lock);
    x->err = err;
    x->done = 1;
    pthread_cond_broadcast(&x->cond);
    pthread_mutex_unlock(&x->lock);
}

/* Wait until fd is ready for `events`; 0 ready, else an errno (ECANCELED: abandoned). */
static int wait_fd(vub_state_xfer *x, int fd, short events)
{
    for (;;) {
        struct pollfd p = { .fd = fd, .events = events };
        int n = poll(&p, 1, POLL_MS);

        if (stopping(x)) {
            return ECANCELED;
        }
        if (n < 0 && errno != EINTR) {
            return errno;
        }
        if (n > 0) {
            return 0;   /* readable, writable, or hung up: the read/write says which */
        }
    }
}

static void *reader(void *arg)
{
    vub_state_xfer *x = arg;
    int err = 0;

    for (;;) {
        if (x->len == x->cap) {
            if (x->cap >= VUB_STATE_MAX) {
                err = EFBIG;
                break;
            }
            size_t cap = x->cap ? x->cap * 2 : 64u << 10;
            uint8_t *b = realloc(x->buf, cap > VUB_STATE_MAX ? VUB_STATE_MAX : cap);
            if (!b) {
                err = ENOMEM;
                break;
            }
            x->buf = b;
            x->cap = cap > VUB_STATE_MAX ? VUB_STATE_MAX : cap;
        }
        ssize_t n = read(x->fd, x->buf + x->len, x->cap - x->len);
        if (n > 0) {
            x->len += (size_t)n;
            continue;
        }
        if (n == 0) {
            break;      /* QEMU closed its end: all of it is here */
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno != EAGAIN || (err = wait_fd(x, x->fd, POLLIN)) != 0) {
            err = err ? err : errno;
            break;
        }
    }
    /* Closed now, also on error: QEMU's writes then fail rather than block. */
    close(x->fd);
    x->fd = -1;
    finished(x, err);
    return NULL;
}

static void *writer(void *arg)
{
    vub_state_xfer *x = arg;
    size_t off = 0;
    int err = 0;

    while (off < x->len) {
        ssize_t n = write(x->fd, x->buf + off, x->len - off);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN && (err = wait_fd(x, x->fd, POLLOUT)) == 0) {
            continue;
        }
        err = err ? err : (n < 0 ? errno : EIO);
        break;
    }
    close(x->fd);   /* QEMU's end of file */
    x->fd = -1;
    finished(x, err);
    return NULL;
}

void vub_state_reset(vub_state_xfer *x)
{
    pthread_mutex_lock(&x->lock);
    x->abandon = 1;
    pthread_mutex_unlock(&x->lock);
    if (x->thread_live) {
        pthread_join(x->thread, NULL);
        x->thread_live = 0;
    }
    if (x->fd >= 0) {
        close(x->fd);
    }
    free(x->buf);
    x->buf = NULL;
    x->len = x->cap = 0;
    x->fd = -1;
    x->dir = -1;
    x->waiting_save = 0;
    x->done = 0;
    x->err = 0;
    x->abandon = 0;
}

void vub_state_destroy(vub_state_xfer *x)
{
    vub_state_reset(x);
    pthread_mutex_destroy(&x->lock);
    pthread_cond_destroy(&x->cond);
}

static int start(vub_state_xfer *x, void *(*fn)(void *))
{
    int rc = pthread_create(&x->thread, NULL, fn, x);

    if (rc == 0) {
        x->thread_live = 1;
        pthread_setname_np(x->thread, "vub-state");   /* seen in /proc/PID/task/ */
    }
    return rc;
}

int vub_state_begin(vub_state_xfer *x, int dir, int fd)
{
    vub_state_reset(x);   /* a new SET_DEVICE_STATE_FD replaces an old transfer */
    if (fd < 0 || (dir != VUB_STATE_SAVE && dir != VUB_STATE_LOAD)) {
        if (fd >= 0) {
            close(fd);
        }
        return EINVAL;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        int e = errno;
        close(fd);
        return e;
    }
    x->fd = fd;
    x->dir = dir;
    if (dir == VUB_STATE_SAVE) {
        x->waiting_save = 1;
        return 0;
    }
    int rc = start(x, reader);
    if (rc) {
        vub_state_reset(x);
    }
    return rc;
}

int vub_state_give(vub_state_xfer *x, const void *buf, size_t len, int failed)
{
    if (x->dir != VUB_STATE_SAVE || !x->waiting_save) {
        return EINVAL;
    }
    x->waiting_save = 0;
    if (failed || len > VUB_STATE_MAX) {
        close(x->fd);   /* QEMU reads an end of file; the check fails */
        x->fd = -1;
        finished(x, failed ? ECANCELED : EFBIG);
        return 0;
    }
    x->buf = malloc(len ? len : 1);
    if (!x->buf) {
        close(x->fd);
        x->fd = -1;
        finished(x, ENOMEM);
        return ENOMEM;
    }
    memcpy(x->buf, buf, len);
    x->len = len;
    int rc = start(x, writer);
    if (rc) {
        close(x->fd);
        x->fd = -1;
        finished(x, rc);
    }
    return rc;
}

int vub_state_finish(vub_state_xfer *x)
{
    if (x->dir < 0) {
        return ENOENT;   /* CHECK_DEVICE_STATE without a transfer */
    }
    if (x->waiting_save) {
        return EBUSY;    /* the daemon never gave its state */
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += (long)(VUB_STATE_CHECK_MS % 1000) * 1000000L;
    until.tv_sec += VUB_STATE_CHECK_MS / 1000 + until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;

    pthread_mutex_lock(&x->lock);
    while (!x->done) {
        if (pthread_cond_timedwait(&x->cond, &x->lock, &until) == ETIMEDOUT) {
            break;
        }
    }
    int done = x->done, err = x->err;
    pthread_mutex_unlock(&x->lock);
    if (!done) {
        return ETIMEDOUT;   /* QEMU sent the check before its end of file */
    }
    if (x->thread_live) {
        pthread_join(x->thread, NULL);
        x->thread_live = 0;
    }
    return err;
}

const uint8_t *vub_state_loaded(vub_state_xfer *x, size_t *len)
{
    if (x->dir != VUB_STATE_LOAD || !x->done || x->err) {
        *len = 0;
        return NULL;
    }
    *len = x->len;
    return x->buf;
}
