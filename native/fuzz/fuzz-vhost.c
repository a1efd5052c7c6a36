/*
 * libFuzzer target: a hostile vhost-user frontend against the shim
 * (vub-shim.c, vub-vhost-check.c) and the libvhost-user it drives. Built by
 * `bash native/build.sh --fuzz`.
 *
 * An input is a program of ops, read byte by byte (missing bytes read as 0):
 *   MSG   req, flags, size(le16), payload: one framed message with the fds
 *         its request carries (a memfd as guest RAM, a memfd as dirty log,
 *         eventfds, a socketpair end), or fds the input chooses; then
 *         vub_dispatch() and the replies and events, as the daemon does
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
 * VUB_FUZZ_SEEDS=DIR writes the seed corpus (QEMU 7.2-like sessions) to DIR;
 * VUB_FUZZ_DEBUG=1 prints each panic (the reason a session ended).
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

#define RAM_SIZE (64u << 10)
#define LOG_BYTES 4096u
#define QVA 0x7f1200000000ull   /* where "QEMU" mapped guest RAM */
#define NQ 6
#define CONFIG_LEN 16
/* What the daemon offers: balloon bits 0, 1, 2, 5, 23 and the ring features. */
#define DEV_FEATURES (0x80002full | 1ull << 28 | 1ull << 29 | 1ull << 32)
#define MAX_FDS 16

enum { OP_MSG, OP_MEM, OP_FIRE, OP_POP, OP_PUSH, OP_MISC, OP_COUNT };

#define FD_SCAN 256

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
    if (!vub_dispatch(s->d)) {
        s->dead = 1;
    }
    if (debug) {
        fprintf(stderr, "request %u: %s\n", req, s->dead ? "connection dropped" : "ok");
    }
    drain_fd(s->fe);
    drain(s);
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
            uint64_t out[2];
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

/* --- seed corpus --- */

typedef struct prog {
    uint8_t b[16384];
    size_t n;
} prog;

static void put(prog *p, const void *d, size_t n)
{
    if (n == 0) {
        return;
    }
    memcpy(p->b + p->n, d, n);
    p->n += n;
}

static void put8(prog *p, uint8_t v)
{
    put(p, &v, 1);
}

static void msg(prog *p, uint8_t req, int reply, const void *payload, uint16_t size)
{
    put8(p, OP_MSG);
    put8(p, req);
    put8(p, reply ? 1 : 0);
    put(p, &size, 2);
    put(p, payload, size);
}

static void msg_u64(prog *p, uint8_t req, uint64_t v)
{
    msg(p, req, 0, &v, 8);
}

static void msg_state(prog *p, uint8_t req, uint32_t idx, uint32_t num)
{
    uint32_t st[2] = { idx, num };
    msg(p, req, 0, st, 8);
}

static void mem(prog *p, uint16_t off, const void *d, size_t len)
{
    for (size_t at = 0; at < len; at += 255) {
        size_t n = len - at < 255 ? len - at : 255;
        uint16_t o = off + at;
        put8(p, OP_MEM);
        put(p, &o, 2);
        put8(p, (uint8_t)n);
        put(p, (const uint8_t *)d + at, n);
    }
}

static void pop_op(prog *p, uint8_t q, uint8_t mode, uint8_t count)
{
    uint8_t v[4] = { OP_POP, q, mode, count - 1 };
    put(p, v, 4);
}

static void fire_op(prog *p, uint8_t k)
{
    uint8_t v[3] = { OP_FIRE, k, 0 };
    put(p, v, 3);
}

static void misc_op(prog *p, uint8_t which, const void *args, size_t len)
{
    put8(p, OP_MISC);
    put8(p, which);
    put(p, args, len);
}

/*
 * A ring of 8 at memfd offset base, buffers at offset bufs, guest-physical
 * address = offset + delta: a PFN buffer, a writable page, an indirect pair,
 * offered three times over (avail idx 3, then 6 by offer()).
 */
static void ring(prog *p, uint16_t base, uint16_t bufs, uint64_t delta)
{
    struct vring_desc desc[8] = {
        { bufs + delta, 16, 0, 0 },
        { bufs + 0x1000 + delta, 0x1000, VRING_DESC_F_WRITE, 0 },
        { bufs + 0x800 + delta, 32, VRING_DESC_F_INDIRECT, 0 },
    };
    struct vring_desc ind[2] = {
        { bufs + 0x100 + delta, 8, VRING_DESC_F_NEXT, 1 },
        { bufs + 0x200 + delta, 8, VRING_DESC_F_WRITE, 0 },
    };
    uint16_t avail[2 + 8 + 1] = { 0, 3, 0, 1, 2, 0, 1, 2, 0, 1 };
    uint32_t pfns[4] = { 1, 2, 3, 4 };

    mem(p, base, desc, sizeof(desc));
    mem(p, base + 0x100, avail, sizeof(avail));
    mem(p, bufs, pfns, sizeof(pfns));
    mem(p, bufs + 0x800, ind, sizeof(ind));
}

static void offer(prog *p, uint16_t base, uint16_t idx)
{
    mem(p, base + 0x102, &idx, 2);
}

static void vring(prog *p, uint32_t q, uint64_t qva, uint64_t gpa, uint32_t flags)
{
    struct vhost_vring_addr a = { q, flags, qva, qva + 0x200, qva + 0x100, gpa + 0x200 };

    msg_state(p, VHOST_USER_SET_VRING_NUM, q, 8);
    msg_state(p, VHOST_USER_SET_VRING_BASE, q, 0);
    msg(p, VHOST_USER_SET_VRING_ADDR, 0, &a, sizeof(a));
    msg_u64(p, VHOST_USER_SET_VRING_KICK, q);
    msg_u64(p, VHOST_USER_SET_VRING_CALL, q);
}

/* QEMU 7.2's realize: vhost_user_backend_init() and vhost_dev_init(). */
static void realize(prog *p, uint64_t proto)
{
    uint8_t cfg[12 + CONFIG_LEN] = { 0, 0, 0, 0, CONFIG_LEN };

    msg(p, VHOST_USER_GET_FEATURES, 0, NULL, 0);
    msg(p, VHOST_USER_GET_PROTOCOL_FEATURES, 0, NULL, 0);
    msg_u64(p, VHOST_USER_SET_PROTOCOL_FEATURES, proto);
    msg(p, VHOST_USER_GET_QUEUE_NUM, 0, NULL, 0);
    if (proto >> VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS & 1) {
        msg(p, VHOST_USER_GET_MAX_MEM_SLOTS, 0, NULL, 0);
    }
    msg(p, VHOST_USER_SET_SLAVE_REQ_FD, 1, NULL, 0);
    msg(p, VHOST_USER_SET_OWNER, 0, NULL, 0);
    msg(p, VHOST_USER_GET_FEATURES, 0, NULL, 0);
    msg(p, VHOST_USER_GET_CONFIG, 0, cfg, sizeof(cfg));
}

static void region(uint8_t out[32], uint64_t gpa, uint64_t size, uint64_t off)
{
    uint64_t r[4] = { gpa, size, QVA + off, off };
    memcpy(out, r, 32);
}

static void write_seed(const char *dir, const char *name, const prog *p)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (!f || fwrite(p->b, 1, p->n, f) != p->n || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void seeds(const char *dir)
{
    const uint64_t proto = 1 << VHOST_USER_PROTOCOL_F_MQ | 1 << VHOST_USER_PROTOCOL_F_LOG_SHMFD |
        1 << VHOST_USER_PROTOCOL_F_REPLY_ACK | 1 << VHOST_USER_PROTOCOL_F_SLAVE_REQ |
        1 << VHOST_USER_PROTOCOL_F_CONFIG | 1 << VHOST_USER_PROTOCOL_F_SLAVE_SEND_FD |
        1 << VHOST_USER_PROTOCOL_F_HOST_NOTIFIER;
    const uint64_t slots = 1 << VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS;
    const uint64_t features = DEV_FEATURES | 1ull << VHOST_USER_F_PROTOCOL_FEATURES;
    uint8_t memreg[40] = { 0 }, table[8 + 64] = { 2 }, actual[12 + 4] = { 4, 0, 0, 0, 4 };
    uint64_t log[2] = { LOG_BYTES, 0 };
    static prog p;

    /* 1: CONFIGURE_MEM_SLOTS, one flat region, three queues started and used. */
    p.n = 0;
    realize(&p, proto | slots);
    msg_u64(&p, VHOST_USER_SET_FEATURES, features);
    region(memreg + 8, 0, RAM_SIZE, 0);
    msg(&p, VHOST_USER_ADD_MEM_REG, 1, memreg, sizeof(memreg));
    for (uint32_t q = 0; q < 3; q++) {
        ring(&p, 0x8000 + q * 0x1000, 0x2000 + q * 0x1000, 0);
        vring(&p, q, QVA + 0x8000 + q * 0x1000, 0x8000 + q * 0x1000, 0);
    }
    for (uint32_t q = 0; q < 3; q++) {
        msg_state(&p, VHOST_USER_SET_VRING_ENABLE, q, 1);
    }
    for (uint32_t q = 0; q < 3; q++) {
        offer(&p, 0x8000 + q * 0x1000, 6);
    }
    fire_op(&p, 0);
    pop_op(&p, 1, 1 | 2 | 16, 1);
    /* meanwhile the guest rewrites queue 1's avail idx; then push len 0 */
    put(&p, (uint8_t[]){ 0x02, 0x91, 0x02, 0x06, 0x00, 0x00 }, 6);
    pop_op(&p, 2, 4, 1);
    put(&p, (uint8_t[]){ OP_PUSH, 2 }, 2);
    msg(&p, VHOST_USER_SET_CONFIG, 1, actual, sizeof(actual));
    misc_op(&p, 2, NULL, 0);
    for (uint32_t q = 0; q < 3; q++) {
        msg_state(&p, VHOST_USER_SET_VRING_ENABLE, q, 0);
        msg_state(&p, VHOST_USER_GET_VRING_BASE, q, 0);
    }
    msg(&p, VHOST_USER_REM_MEM_REG, 1, memreg, sizeof(memreg));
    write_seed(dir, "qemu-mem-slots", &p);

    /* 2: SET_MEM_TABLE with two regions, rings in the second. */
    p.n = 0;
    realize(&p, proto);
    msg_u64(&p, VHOST_USER_SET_FEATURES, features);
    region(table + 8, 0, RAM_SIZE / 2, 0);
    region(table + 40, 0x100000, RAM_SIZE / 2, RAM_SIZE / 2);
    msg(&p, VHOST_USER_SET_MEM_TABLE, 1, table, sizeof(table));
    ring(&p, 0x8000, 0xa000, 0x100000 - 0x8000);
    vring(&p, 0, QVA + 0x8000, 0x100000, 0);
    msg_state(&p, VHOST_USER_SET_VRING_ENABLE, 0, 1);
    offer(&p, 0x8000, 6);
    fire_op(&p, 0);
    misc_op(&p, 0, (uint64_t[]){ 0x101000, 0x1000 }, 12);   /* discard a page */
    misc_op(&p, 1, (uint64_t[]){ 0x100000, 0x10 }, 10);
    msg_state(&p, VHOST_USER_GET_VRING_BASE, 0, 0);
    write_seed(dir, "qemu-mem-table", &p);

    /* 3: dirty logging: log base, LOG_ALL, a logged ring. */
    p.n = 0;
    realize(&p, proto | slots);
    region(memreg + 8, 0, RAM_SIZE, 0);
    msg(&p, VHOST_USER_ADD_MEM_REG, 1, memreg, sizeof(memreg));
    msg(&p, VHOST_USER_SET_LOG_BASE, 1, log, sizeof(log));
    msg_u64(&p, VHOST_USER_SET_FEATURES, features | 1ull << VHOST_F_LOG_ALL);
    ring(&p, 0x8000, 0x2000, 0);
    vring(&p, 0, QVA + 0x8000, 0x8000, 1 << VHOST_VRING_F_LOG);
    offer(&p, 0x8000, 6);
    pop_op(&p, 0, 0, 3);
    write_seed(dir, "qemu-log", &p);

    /* 4: the rarer requests: error fd, no kick fd (polling), reset. */
    p.n = 0;
    realize(&p, proto | slots);
    msg_u64(&p, VHOST_USER_SET_FEATURES, features);
    msg(&p, VHOST_USER_ADD_MEM_REG, 1, memreg, sizeof(memreg));
    ring(&p, 0x9000, 0x2000, 0);
    msg_u64(&p, VHOST_USER_SET_VRING_ERR, 1);
    vring(&p, 1, QVA + 0x9000, 0x9000, 0);
    msg_u64(&p, VHOST_USER_SET_VRING_KICK, 1 | VHOST_USER_VRING_NOFD_MASK);
    offer(&p, 0x9000, 6);
    pop_op(&p, 1, 0, 2);
    msg(&p, VHOST_USER_SET_LOG_FD, 0, NULL, 0);
    msg(&p, VHOST_USER_RESET_OWNER, 0, NULL, 0);
    write_seed(dir, "qemu-rare", &p);

    /* 5-: one of each other request after realize, for the fuzzer to vary. */
    for (int req = 1; req < VHOST_USER_MAX; req++) {
        char name[32];
        uint8_t body[40] = { 0 };
        p.n = 0;
        realize(&p, proto | slots);
        msg(&p, (uint8_t)req, 0, body, req == VHOST_USER_SET_VRING_ADDR ? 40 : 24);
        snprintf(name, sizeof(name), "request-%02d", req);
        write_seed(dir, name, &p);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *dir = getenv("VUB_FUZZ_SEEDS");

    (void)argc;
    (void)argv;
    if (dir) {
        seeds(dir);
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
