/*
 * libFuzzer target: a hostile vhost-user frontend against the shim
 * (vub-shim.c, vub-vhost-check.c) and the libvhost-user it drives. Built by
 * `bash native/build.sh --fuzz`.
 *
 * An input is a program of ops, read byte by byte (missing bytes read as 0):
 *   MSG   req, flags, size(le16), payload: one framed message with the fds
 *         its request carries (a memfd as guest RAM, a memfd as dirty log,
 *         eventfds, a socketpair end), or fds the input chooses; then
 *         vub_dispatch_ready() and the replies and events, as the daemon does
 *   MEM   off(le16), len, bytes: write guest RAM (rings, descriptors, PFNs)
 *   FIRE  k, mode: make the eventfds readable, fire the k-th watch
 *   POP   q, count, mode: pop from a started queue, read the buffers,
 *         discard device-writable pages, push or drop or hold (like the
 *         stats buffer) the element; guest RAM may change in between
 *   PUSH  q: push the element held on q
 *   MISC  which, args: vub_discard, vub_gpa_to_va, config change and friends
 * After the program, vub_free(); an fd left open by the session aborts.
 *
 * The daemon's contract is followed: elements are pushed with len 0 while
 * VHOST_F_LOG_ALL is negotiated, held elements are dropped when their queue
 * stops, and the session ends at the first failed dispatch or panic.
 *
 * VUB_FUZZ_SEEDS=DIR writes the seed corpus (fuzz-seeds.c) to DIR;
 * VUB_FUZZ_DEBUG=1 prints each request, pop and panic of the inputs run.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "libvhost-user.h"
#include "../vub-shim.h"
#include "fuzz-vhost.h"

#define MAX_FDS 16    /* eventfds / channels a session hands out */
#define FD_SCAN 256   /* fds checked for leaks after a session */

static int ram_fd, log_fd, debug;
static bool fd_before[FD_SCAN];   /* open before the session (libFuzzer's own) */
static uint8_t *ram;

typedef struct reader {
    const uint8_t *p;
    size_t n;
} reader;

static uint8_t u8(reader *r)
{
    if (!r->n) {
        return 0;
    }
    r->n--;
    return *r->p++;
}

static uint64_t uN(reader *r, int bytes)
{
    uint64_t v = 0;

    for (int i = 0; i < bytes; i++) {
        v |= (uint64_t)u8(r) << (8 * i);
    }
    return v;
}

typedef struct session {
    vub_dev *d;
    int fe;                  /* the frontend's end of the socket */
    int efd[MAX_FDS];        /* our copies of the eventfds handed over */
    int nefd;
    int chan[MAX_FDS];       /* our ends of the backend channels */
    int nchan;
    int watch[64];           /* daemon-side fds it asked us to watch */
    int nwatch;
    void *held[NQ];          /* an element kept across messages, per queue */
    int dead;
    reader *r;
} session;

/* QEMU's event notifiers are non-blocking eventfds. Past MAX_FDS: reused. */
static int new_eventfd(session *s)
{
    if (s->nefd == MAX_FDS) {
        return s->efd[s->nefd - 1];
    }
    return s->efd[s->nefd++] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

static int new_channel(session *s)
{
    int sv[2];

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0) {
        abort();
    }
    if (s->nchan == MAX_FDS) {
        close(sv[1]);   /* the backend gets a channel nobody reads */
    } else {
        s->chan[s->nchan++] = sv[1];
    }
    return sv[0];   /* sent, then closed by the caller */
}

/* Read and discard whatever is waiting on fd (replies, backend requests). */
static void drain_fd(int fd)
{
    char buf[512], control[CMSG_SPACE(8 * sizeof(int))];

    for (;;) {
        struct iovec iov = { buf, sizeof(buf) };
        struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
                            .msg_control = control, .msg_controllen = sizeof(control) };
        if (recvmsg(fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) <= 0) {
            return;
        }
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                int *fds = (int *)CMSG_DATA(c);
                for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
                    close(fds[i]);
                }
            }
        }
    }
}

static void drop_held(session *s, int q)
{
    if (s->held[q]) {
        vub_drop(s->held[q]);
        s->held[q] = NULL;
    }
}

static int logging(session *s)
{
    return vub_features(s->d) >> VHOST_F_LOG_ALL & 1;
}

static void guest_writes(session *s)
{
    uint32_t off = uN(s->r, 2) % RAM_SIZE;
    uint32_t len = u8(s->r);

    for (uint32_t i = 0; i < len && off + i < RAM_SIZE; i++) {
        ram[off + i] = u8(s->r);
    }
}

static void drain(session *s);

/*
 * What BalloonDevice.service() does with a queue, give or take. mode (only
 * from an explicit POP; pops on events use 0, pushing with len 0 like the
 * daemon): 1 discard device-writable buffers, 2 the guest writes before the
 * push, 4/8 hold/drop instead of pushing, 16 push with a len from the input.
 */
static void pop(session *s, int q, int count, int mode)
{
    uint32_t hdr[3];
    uint64_t iov[2 * 64];
    static uint8_t sink[4096];

    while (count-- > 0 && !s->dead) {
        void *e = vub_pop(s->d, q, hdr, iov, 64);
        drain(s);
        if (!e) {
            return;
        }
        if (debug) {
            fprintf(stderr, "pop q%d: head %u, %u out, %u in\n", q, hdr[0], hdr[1], hdr[2]);
        }
        uint32_t seen = hdr[1] + hdr[2] < 64 ? hdr[1] + hdr[2] : 64;
        for (uint32_t k = 0; k < seen; k++) {
            uint64_t len = iov[2 * k + 1] < sizeof(sink) ? iov[2 * k + 1] : sizeof(sink);
            if (k < hdr[1]) {
                vub_read(iov[2 * k], sink, len);
            } else if (mode & 1) {
                vub_discard_hva(s->d, iov[2 * k], iov[2 * k + 1]);   /* free page reporting */
            }
        }
        if (mode & 2) {
            guest_writes(s);   /* a racing guest rewrites the ring meanwhile */
        }
        if ((mode & 12) == 4 && q < NQ && q >= 0) {
            drop_held(s, q);
            s->held[q] = e;    /* like the stats buffer: pushed later */
            continue;
        }
        if ((mode & 12) == 8) {
            vub_drop(e);
            continue;
        }
        vub_push(s->d, q, e, (mode & 16) && !logging(s) ? u8(s->r) : 0);
        vub_notify(s->d, q);
        drain(s);
    }
}

static void drain(session *s)
{
    vub_event ev[64];
    int n;

    while (!s->dead && (n = vub_next_events(s->d, ev, 64)) > 0) {
        for (int i = 0; i < n && !s->dead; i++) {
            switch (ev[i].kind) {
            case VUB_EV_SET_WATCH:
                if (s->nwatch < 64) {
                    s->watch[s->nwatch++] = ev[i].a;
                }
                break;
            case VUB_EV_REMOVE_WATCH:
                for (int k = 0; k < s->nwatch; k++) {
                    if (s->watch[k] == ev[i].a) {
                        s->watch[k--] = s->watch[--s->nwatch];
                    }
                }
                break;
            case VUB_EV_QUEUE_STARTED:
                if (ev[i].a < 0 || ev[i].a >= NQ) {
                    abort();   /* libvhost-user reported a queue it does not have */
                }
                vub_queue_enable_handler(s->d, ev[i].a, ev[i].b);
                if (!ev[i].b) {
                    drop_held(s, ev[i].a);
                } else {
                    pop(s, ev[i].a, 4, 0);
                }
                break;
            case VUB_EV_KICK:
                pop(s, ev[i].a, 8, 0);
                break;
            case VUB_EV_PANIC:
                if (debug) {
                    fprintf(stderr, "panic: %s\n", vub_last_panic(s->d));
                }
                s->dead = 1;   /* the daemon drops the connection */
                break;
            case VUB_EV_OVERFLOW:
                s->dead = 1;
                break;
            }
        }
    }
}

static void op_msg(session *s)
{
    reader *r = s->r;
    uint32_t req = u8(r), fl = u8(r), size = uN(r, 2);
    uint8_t buf[12 + 272] = { 0 };
    uint32_t flags = (fl & 3) == 1 ? 9 : (fl & 3) == 2 ? (uint32_t)uN(r, 4) : 1;
    uint32_t body = size <= 272 ? size : 0;   /* larger: dropped unread */
    int fds[8], nfds = 0, close_after[8], nclose = 0;

    memcpy(buf, &req, 4);
    memcpy(buf + 4, &flags, 4);
    memcpy(buf + 8, &size, 4);
    for (uint32_t i = 0; i < body; i++) {
        buf[12 + i] = u8(r);
    }
    uint64_t u64;
    memcpy(&u64, buf + 12, 8);
    if (fl & 0x20) {
        /* fds the input chooses: 0-7 of one kind */
        int kind = fl >> 6;
        for (nfds = 0; nfds < ((fl >> 2) & 7); nfds++) {
            fds[nfds] = kind == 0 ? ram_fd : kind == 1 ? log_fd : kind == 2 ? new_eventfd(s) : new_channel(s);
            if (kind == 3) {
                close_after[nclose++] = fds[nfds];
            }
        }
    } else {
        switch (req) {
        case VHOST_USER_SET_MEM_TABLE: {
            uint32_t n;
            memcpy(&n, buf + 12, 4);
            for (nfds = 0; nfds < (int)(n < 8 ? n : 8); nfds++) {
                fds[nfds] = ram_fd;
            }
            break;
        }
        case VHOST_USER_ADD_MEM_REG:
            fds[nfds++] = ram_fd;
            break;
        case VHOST_USER_SET_LOG_BASE:
        case VHOST_USER_SET_INFLIGHT_FD:
            fds[nfds++] = log_fd;
            break;
        case VHOST_USER_SET_VRING_KICK:
        case VHOST_USER_SET_VRING_CALL:
        case VHOST_USER_SET_VRING_ERR:
            if (!(u64 & VHOST_USER_VRING_NOFD_MASK)) {
                fds[nfds++] = new_eventfd(s);
            }
            break;
        case VHOST_USER_SET_LOG_FD:
            fds[nfds++] = new_eventfd(s);
            break;
        case VHOST_USER_SET_SLAVE_REQ_FD:
            fds[nfds] = new_channel(s);
            close_after[nclose++] = fds[nfds++];
            break;
        }
    }

    char control[CMSG_SPACE(sizeof(fds))];
    struct iovec iov = { buf, 12 + body };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (nfds) {
        memset(control, 0, sizeof(control));
        m.msg_control = control;
        m.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    if (sendmsg(s->fe, &m, MSG_NOSIGNAL) != (ssize_t)(12 + body)) {
        abort();
    }
    for (int i = 0; i < nclose; i++) {
        close(close_after[i]);
    }
    /*
     * Like VhostUserConnection.dispatchRound(): events first, then the
     * verdict. The message is all there and its replies are drained, so
     * only a refusal or a closed peer ends the session.
     */
    int ok = vub_dispatch_ready(s->d) != VUB_DISPATCH_GONE;
    if (debug) {
        fprintf(stderr, "request %u: %s\n", req, ok ? "ok" : "connection dropped");
    }
    drain_fd(s->fe);
    drain(s);
    if (!ok) {
        s->dead = 1;
    }
}

static void op_misc(session *s)
{
    reader *r = s->r;
    uint64_t a, len;
    uint8_t buf[16];

    switch (u8(r) % 5) {
    case 0:
        a = uN(r, 8);
        len = uN(r, 4);
        vub_discard(s->d, a, len);
        break;
    case 1:
        a = uN(r, 8);
        len = uN(r, 2);
        a = vub_gpa_to_va(s->d, a, &len);
        if (a && len) {
            vub_read(a, buf, 1);   /* a translation must point into guest RAM */
        }
        break;
    case 2:
        vub_config_change(s->d);
        break;
    case 3:
        a = u8(r);
        len = u8(r) % 17;
        memset(buf, u8(r), sizeof(buf));
        vub_config_write(s->d, (uint32_t)a, buf, (uint32_t)len);
        vub_config_read(s->d, (uint32_t)a, buf, (uint32_t)len);
        break;
    default:
        vub_ram_end(s->d);
        for (uint32_t i = 0; i < vub_nregions(s->d) + 1; i++) {
            uint64_t out[3];
            vub_region(s->d, i, out);
        }
        vub_queue_last_avail(s->d, u8(r) % (NQ + 2));
        break;
    }
}

static void run(reader *r)
{
    session s = { .r = r };
    int sv[2];

    if (ftruncate(ram_fd, 0) < 0 || ftruncate(ram_fd, RAM_SIZE) < 0 ||
        ftruncate(log_fd, 0) < 0 || ftruncate(log_fd, LOG_BYTES) < 0 ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        abort();
    }
    s.d = vub_new(sv[0], NQ, DEV_FEATURES, 0, CONFIG_LEN);
    s.fe = sv[1];
    while (r->n && !s.dead) {
        uint8_t op = u8(r) % OP_COUNT, k, mode;
        switch (op) {
        case OP_MSG:
            op_msg(&s);
            break;
        case OP_MEM:
            guest_writes(&s);
            break;
        case OP_FIRE:
            k = u8(r);
            mode = u8(r);
            for (int i = 0; i < s.nefd && !(mode & 1); i++) {
                eventfd_write(s.efd[i], 1);
            }
            if (s.nwatch) {
                vub_fire_watch(s.d, s.watch[k % s.nwatch], (mode & 2) ? POLLIN | POLLHUP : POLLIN);
            }
            drain(&s);
            break;
        case OP_POP:
            k = u8(r);
            mode = u8(r);
            pop(&s, k % (NQ + 1), u8(r) % 8 + 1, mode);
            break;
        case OP_PUSH:
            k = u8(r) % NQ;
            if (s.held[k]) {
                vub_push(s.d, k, s.held[k], 0);
                s.held[k] = NULL;
                vub_notify(s.d, k);
                drain(&s);
            }
            break;
        case OP_MISC:
            op_misc(&s);
            drain(&s);
            break;
        }
        for (int i = 0; i < s.nchan; i++) {
            drain_fd(s.chan[i]);   /* backend channel requests */
        }
    }
    for (int q = 0; q < NQ; q++) {
        drop_held(&s, q);
    }
    vub_free(s.d);   /* closes sv[0] */
    close(s.fe);
    for (int i = 0; i < s.nefd; i++) {
        close(s.efd[i]);
    }
    for (int i = 0; i < s.nchan; i++) {
        close(s.chan[i]);
    }
    /* A hostile frontend must not be able to pile up fds in the daemon. */
    for (int fd = 0; fd < FD_SCAN; fd++) {
        if (!fd_before[fd] && fcntl(fd, F_GETFD) != -1) {
            char path[32], link[128] = "";
            snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
            if (readlink(path, link, sizeof(link) - 1) < 0) {
                strcpy(link, "?");
            }
            fprintf(stderr, "fd leak: fd %d (%s) open after the session\n", fd, link);
            abort();
        }
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *dir = getenv("VUB_FUZZ_SEEDS");

    (void)argc;
    (void)argv;
    if (dir) {
        fuzz_write_seeds(dir);
        exit(0);
    }
    ram_fd = memfd_create("vub-fuzz-ram", MFD_CLOEXEC);
    log_fd = memfd_create("vub-fuzz-log", MFD_CLOEXEC);
    if (ram_fd < 0 || log_fd < 0 || ftruncate(ram_fd, RAM_SIZE) < 0) {
        abort();
    }
    ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ram_fd, 0);
    if (ram == MAP_FAILED) {
        abort();
    }
    debug = getenv("VUB_FUZZ_DEBUG") != NULL;   /* print each panic */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader r = { data, size };

    for (int fd = 0; fd < FD_SCAN; fd++) {
        fd_before[fd] = fcntl(fd, F_GETFD) != -1;
    }
    run(&r);
    return 0;
}
