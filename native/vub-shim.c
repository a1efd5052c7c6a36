/*
 * vub-shim: see vub-shim.h. Our own code; libvhost-user is fetched from
 * Debian's QEMU source package and built next to this file at build time.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "vub-shim.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "libvhost-user.h"
#include "vub-discard.h"
#include "vub-state.h"
#include "vub-vhost-check.h"

#define VUB_MAX_EVENTS 1024
#define VUB_CONFIG_MAX 256
/*
 * Send-queue room a reply needs before a message is dispatched: libvhost-user
 * writes a reply as two skbs (header, payload; each well under 2 KiB of
 * truesize) and a unix socket lets an allocation start while the queue is
 * below SO_SNDBUF.
 */
#define VUB_REPLY_ROOM (16 << 10)
/* libvhost-user numbers the inflate queue 0 whatever else is negotiated. */
#define VUB_INFLATE_QUEUE 0

struct vub_dev {
    VuDev vu;                 /* first: callbacks get a VuDev * */
    VuDevIface iface;
    uint64_t device_features;
    uint64_t extra_protocol_features;
    uint32_t config_len;
    uint8_t config[VUB_CONFIG_MAX];
    vub_event events[VUB_MAX_EVENTS];
    int ev_head, ev_count, ev_lost;
    char panic_msg[256];
    int initialised;
    int peer_closed;
    vub_discarder bg;         /* background discards (deferred mode) */
    int in_dispatch;          /* inside vu_dispatch() on the main thread */
    int map_locked;           /* bg.map_lock held for the message in dispatch */
    int epfd;                 /* the daemon's epoll set, or -1 */
    int sndbuf;               /* SO_SNDBUF of the socket (0: unknown) */
    /* CONFIG_CHANGE_MSG waiting for room on the backend channel. */
    int cc_queued;            /* a change is owed to the frontend */
    uint32_t cc_off;          /* bytes of the header already sent */
    int cc_fd;                /* channel cc_off refers to */
    int cc_watch_fd;          /* backend channel watched for POLLOUT, or -1 */
    uint64_t cc_sent;         /* whole messages sent */
    uint64_t cc_waits;        /* sends that found the channel full */
    /*
     * Each region's backing page size, from its fd, and a copy of the fd
     * (libvhost-user closes its own after mapping): fstat() of it says how
     * much host memory backs guest RAM. Closed when the region goes, with
     * the mappings.
     */
    struct { uint64_t gpa, page; int fd; } pages[VHOST_USER_MAX_RAM_SLOTS];
    uint32_t npages;
    vub_state_xfer xfer;      /* device state transfer (migration) */
    int state_reply_owed;     /* CHECK_DEVICE_STATE of a LOAD waits for the daemon */
};

/* hugetlbfs: the fd's huge page size; anything else: the base page. */
static uint64_t backing_page(int fd)
{
    struct statfs sf;

    if (fstatfs(fd, &sf) == 0 && (uint32_t)sf.f_type == HUGETLBFS_MAGIC && sf.f_bsize > 0) {
        return (uint64_t)sf.f_bsize;
    }
    return (uint64_t)sysconf(_SC_PAGESIZE);
}

static void note_region(vub_dev *d, uint64_t gpa, int fd)
{
    d->pages[d->npages].gpa = gpa;
    d->pages[d->npages].page = backing_page(fd);
    d->pages[d->npages++].fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
}

static void forget_regions(vub_dev *d)
{
    for (uint32_t i = 0; i < d->npages; i++) {
        if (d->pages[i].fd >= 0) {
            close(d->pages[i].fd);
        }
    }
    d->npages = 0;
}

/* The memory table changes (checked by the firewall): note each region's page size and fd. */
static void note_pages(vub_dev *d, const VhostUserMsg *vmsg)
{
    if (vmsg->request == VHOST_USER_SET_MEM_TABLE) {
        forget_regions(d);
        for (uint32_t i = 0; i < vmsg->payload.memory.nregions && i < (uint32_t)vmsg->fd_num; i++) {
            note_region(d, vmsg->payload.memory.regions[i].guest_phys_addr, vmsg->fds[i]);
        }
    } else if (vmsg->request == VHOST_USER_ADD_MEM_REG && vmsg->fd_num == 1 && d->npages < VHOST_USER_MAX_RAM_SLOTS) {
        note_region(d, vmsg->payload.memreg.region.guest_phys_addr, vmsg->fds[0]);
    } else if (vmsg->request == VHOST_USER_REM_MEM_REG) {
        for (uint32_t i = 0; i < d->npages; i++) {
            if (d->pages[i].gpa == vmsg->payload.memreg.region.guest_phys_addr) {
                if (d->pages[i].fd >= 0) {
                    close(d->pages[i].fd);
                }
                d->pages[i] = d->pages[--d->npages];
                break;
            }
        }
    }
}

int64_t vub_backed_bytes(vub_dev *d)
{
    struct stat seen[VHOST_USER_MAX_RAM_SLOTS];
    uint32_t n = 0;
    int64_t bytes = 0;

    if (d->npages == 0) {
        return -1;
    }
    for (uint32_t i = 0; i < d->npages; i++) {
        struct stat st;
        bool dup = false;

        if (d->pages[i].fd < 0 || fstat(d->pages[i].fd, &st) < 0) {
            return -1;
        }
        /* Regions of one memfd (RAM below and above the PCI hole): count the file once. */
        for (uint32_t j = 0; j < n && !dup; j++) {
            dup = seen[j].st_dev == st.st_dev && seen[j].st_ino == st.st_ino;
        }
        if (!dup) {
            seen[n++] = st;
            bytes += (int64_t)st.st_blocks * 512;
        }
    }
    return bytes;
}

static vub_dev *to_vub(VuDev *vu)
{
    return (vub_dev *)vu;
}

static void push_event(vub_dev *d, int kind, int a, int b, uint64_t u)
{
    if (d->ev_count == VUB_MAX_EVENTS) {
        d->ev_lost++;
        return;
    }
    vub_event *e = &d->events[(d->ev_head + d->ev_count) % VUB_MAX_EVENTS];
    e->kind = kind;
    e->a = a;
    e->b = b;
    e->pad = 0;
    e->u = u;
    d->ev_count++;
}

/* --- libvhost-user callbacks: record, never call out. --- */

static void cb_panic(VuDev *vu, const char *err)
{
    vub_dev *d = to_vub(vu);
    snprintf(d->panic_msg, sizeof(d->panic_msg), "%s", err ? err : "unknown");
    push_event(d, VUB_EV_PANIC, 0, 0, 0);
}

/* Watch callbacks libvhost-user asked for, by fd (kick fds only). */
typedef struct watch_slot {
    int fd;
    vu_watch_cb cb;
    void *data;
} watch_slot;

#define VUB_MAX_WATCHES 64

typedef struct vub_watches {
    watch_slot slot[VUB_MAX_WATCHES];
} vub_watches;

/* Kept beside the device; allocated with it (see vub_new). */
static vub_watches *watches_of(vub_dev *d)
{
    return (vub_watches *)(d + 1);
}

static void cb_set_watch(VuDev *vu, int fd, int condition, vu_watch_cb cb,
                         void *data)
{
    vub_dev *d = to_vub(vu);
    vub_watches *w = watches_of(d);
    int free_slot = -1;

    for (int i = 0; i < VUB_MAX_WATCHES; i++) {
        if (w->slot[i].cb && w->slot[i].fd == fd) {
            free_slot = i;
            break;
        }
        if (!w->slot[i].cb && free_slot < 0) {
            free_slot = i;
        }
    }
    if (free_slot < 0) {
        cb_panic(vu, "too many watched fds");
        return;
    }
    w->slot[free_slot] = (watch_slot){ .fd = fd, .cb = cb, .data = data };
    push_event(d, VUB_EV_SET_WATCH, fd, condition, 0);
}

/*
 * Out of the epoll set now: libvhost-user closes the fd right after this
 * call, and the frontend still holds the same open file (a kick eventfd), so
 * a registration left for later would outlive the fd and keep firing.
 */
static void epoll_forget(vub_dev *d, int fd)
{
    if (d->epfd >= 0 && fd >= 0) {
        epoll_ctl(d->epfd, EPOLL_CTL_DEL, fd, NULL);
    }
}

static void cb_remove_watch(VuDev *vu, int fd)
{
    vub_dev *d = to_vub(vu);
    vub_watches *w = watches_of(d);

    epoll_forget(d, fd);
    for (int i = 0; i < VUB_MAX_WATCHES; i++) {
        if (w->slot[i].cb && w->slot[i].fd == fd) {
            w->slot[i].cb = NULL;
        }
    }
    push_event(d, VUB_EV_REMOVE_WATCH, fd, 0, 0);
}

static uint64_t cb_get_features(VuDev *vu)
{
    return to_vub(vu)->device_features;
}

static void cb_set_features(VuDev *vu, uint64_t features)
{
    push_event(to_vub(vu), VUB_EV_SET_FEATURES, 0, 0, features);
}

static uint64_t cb_get_protocol_features(VuDev *vu)
{
    return to_vub(vu)->extra_protocol_features;
}

static void cb_queue_handler(VuDev *vu, int qidx)
{
    push_event(to_vub(vu), VUB_EV_KICK, qidx, 0, 0);
}

static void cb_queue_set_started(VuDev *vu, int qidx, bool started)
{
    vub_dev *d = to_vub(vu);

    /*
     * GET_VRING_BASE: the reply goes out when we return, and after a reset
     * the guest owns its pages again. Stop discarding here, not later.
     */
    if (!started && qidx == VUB_INFLATE_QUEUE) {
        vub_discarder_suspend(&d->bg);
    }
    push_event(d, VUB_EV_QUEUE_STARTED, qidx, started ? 1 : 0, 0);
}

/*
 * len is the frontend's payload.config.size, unchecked by libvhost-user 7.2;
 * config is the 256-byte region inside the VhostUserMsg on its stack.
 */
static int cb_get_config(VuDev *vu, uint8_t *config, uint32_t len)
{
    vub_dev *d = to_vub(vu);
    uint32_t n = len < d->config_len ? len : d->config_len;

    if (len > VHOST_USER_MAX_CONFIG_SIZE) {
        return -1; /* libvhost-user answers with an empty payload: refused */
    }
    memset(config, 0, len);
    memcpy(config, d->config, n);
    return 0;
}

static int cb_set_config(VuDev *vu, const uint8_t *data, uint32_t offset,
                         uint32_t size, uint32_t flags)
{
    vub_dev *d = to_vub(vu);

    if (offset > d->config_len || size > d->config_len - offset) {
        return -1;
    }
    memcpy(d->config + offset, data, size);
    /* flags: VHOST_SET_CONFIG_TYPE_MASTER (0) or _MIGRATION (1) */
    push_event(d, VUB_EV_SET_CONFIG, (int)offset, (int)size, flags);
    return 0;
}

/* A reply with a u64 payload, in place of the request (fds are consumed). */
static void reply_u64(VhostUserMsg *vmsg, uint64_t v)
{
    vmsg->flags = VUB_USER_VERSION;   /* libvhost-user adds the reply bit */
    vmsg->size = sizeof(vmsg->payload.u64);
    vmsg->payload.u64 = v;
    vmsg->fd_num = 0;
}

/*
 * The device state transfer (vub-state.h), which libvhost-user 7.2 does
 * not know; the firewall has checked sizes, fds and the negotiated bit.
 * SET_DEVICE_STATE_FD: 0 with the "no fd" bit (we use QEMU's pipe), or 1.
 * CHECK_DEVICE_STATE: 0 when the transfer was whole; for a LOAD the reply
 * waits for the daemon to decode the state (vub_state_reply()).
 */
static int cb_process_msg(VuDev *vu, VhostUserMsg *vmsg, int *do_reply)
{
    vub_dev *d = to_vub(vu);

    if (vmsg->request == VUB_USER_SET_DEVICE_STATE_FD) {
        uint32_t dir, phase;
        memcpy(&dir, (char *)&vmsg->payload, 4);
        memcpy(&phase, (char *)&vmsg->payload + 4, 4);
        int fd = vmsg->fds[0];
        vmsg->fd_num = 0;
        d->state_reply_owed = 0;
        int err = phase != 0 ? (close(fd), EINVAL) : vub_state_begin(&d->xfer, (int)dir, fd);
        reply_u64(vmsg, err ? 1 : 1u << 8);
        if (!err && dir == VUB_STATE_SAVE) {
            push_event(d, VUB_EV_STATE_SAVE, 0, 0, 0);
        }
        *do_reply = 1;
        return 1;
    }
    if (vmsg->request == VUB_USER_CHECK_DEVICE_STATE) {
        int err = vub_state_finish(&d->xfer);
        size_t len = 0;
        if (!err && d->xfer.dir == VUB_STATE_LOAD && vub_state_loaded(&d->xfer, &len)) {
            d->state_reply_owed = 1;
            push_event(d, VUB_EV_STATE_LOADED, 0, 0, len);
            *do_reply = 0;
            return 1;
        }
        if (err) {
            push_event(d, VUB_EV_STATE_FAILED, d->xfer.dir, err, 0);
        }
        reply_u64(vmsg, err ? 1 : 0);
        *do_reply = 1;
        return 1;
    }
    return 0;
}

/*
 * Our read_msg: libvhost-user's default asserts on a short payload and
 * turns end-of-file into VHOST_USER_NONE, on which it calls exit(0). A
 * daemon that outlives its frontend must treat both as "peer gone".
 */
static bool cb_read_msg(VuDev *vu, int sock, VhostUserMsg *vmsg)
{
    vub_dev *d = to_vub(vu);
    char control[CMSG_SPACE(VHOST_MEMORY_BASELINE_NREGIONS * sizeof(int))];
    struct iovec iov = { .iov_base = vmsg, .iov_len = VHOST_USER_HDR_SIZE };
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1,
        .msg_control = control, .msg_controllen = sizeof(control),
    };
    size_t got = 0;
    ssize_t rc;

    memset(control, 0, sizeof(control));
    vmsg->fd_num = 0;
    do {
        rc = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (rc < 0 && errno == EINTR);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            int *in = (int *)CMSG_DATA(c);
            for (size_t i = 0; i < n; i++) {
                if (vmsg->fd_num < VHOST_MEMORY_BASELINE_NREGIONS) {
                    vmsg->fds[vmsg->fd_num++] = in[i];
                } else {
                    close(in[i]);
                }
            }
        }
    }
    if (rc <= 0 || (size_t)rc < VHOST_USER_HDR_SIZE) {
        goto gone;
    }
    if (vmsg->request == VHOST_USER_NONE || vmsg->size > sizeof(vmsg->payload)) {
        goto gone;
    }
    while (got < vmsg->size) {
        rc = read(sock, (char *)&vmsg->payload + got, vmsg->size - got);
        if (rc < 0 && errno == EINTR) {
            continue;
        }
        if (rc <= 0) {
            goto gone;
        }
        got += (size_t)rc;
    }
    if (!vub_vhost_check_msg(vu, vmsg)) {
        return false;   /* refused: fds closed, device broken, reason recorded */
    }
    /*
     * GET_VRING_BASE: buffers we hold (the stats buffer) go back to the
     * ring, so whoever runs it next (this daemon after a pause, the
     * destination after a migration) pops them again. The daemon drops its
     * copies on the queue-stopped event. Index checked by the firewall.
     */
    if (vmsg->request == VHOST_USER_GET_VRING_BASE) {
        VuVirtq *vq = &vu->vq[vmsg->payload.state.index];
        if (vq->inuse) {
            vu_queue_rewind(vu, vq, vq->inuse);
        }
    }
    /* libvhost-user closes the old backend channel when a new one comes. */
    if (vmsg->request == VHOST_USER_SET_SLAVE_REQ_FD && d->cc_watch_fd >= 0) {
        epoll_forget(d, d->cc_watch_fd);
        push_event(d, VUB_EV_REMOVE_WATCH, d->cc_watch_fd, 0, 0);
        d->cc_watch_fd = -1;
    }
    /*
     * Any message but the config ones may change the memory table: hold the
     * discard thread off the mappings until libvhost-user has handled it.
     */
    if (d->in_dispatch && !d->map_locked &&
        vmsg->request != VHOST_USER_SET_CONFIG && vmsg->request != VHOST_USER_GET_CONFIG) {
        pthread_mutex_lock(&d->bg.map_lock);
        d->map_locked = 1;
    }
    note_pages(d, vmsg);   /* under map_lock when dispatching */
    return true;

gone:
    for (int i = 0; i < vmsg->fd_num; i++) {
        close(vmsg->fds[i]);
    }
    vmsg->fd_num = 0;
    d->peer_closed = 1;
    return false;
}

/* --- lifecycle --- */

vub_dev *vub_new(int sock, uint16_t max_queues, uint64_t device_features,
                 uint64_t extra_protocol_features, uint32_t config_len)
{
    if (config_len > VUB_CONFIG_MAX || max_queues == 0 || sock < 0) {
        errno = EINVAL;
        return NULL;
    }
    vub_dev *d = calloc(1, sizeof(*d) + sizeof(vub_watches));
    if (!d) {
        return NULL;
    }
    d->device_features = device_features;
    d->extra_protocol_features = extra_protocol_features;
    d->config_len = config_len;
    d->epfd = -1;
    d->cc_fd = -1;
    d->cc_watch_fd = -1;
    d->iface = (VuDevIface){
        .get_features = cb_get_features,
        .set_features = cb_set_features,
        .get_protocol_features = cb_get_protocol_features,
        .queue_set_started = cb_queue_set_started,
        .get_config = cb_get_config,
        .set_config = cb_set_config,
        .process_msg = cb_process_msg,
    };
    if (!vu_init(&d->vu, max_queues, sock, cb_panic, cb_read_msg, cb_set_watch,
                 cb_remove_watch, &d->iface)) {
        free(d);
        errno = ENOMEM;
        return NULL;
    }
    d->initialised = 1;
    vub_discarder_init(&d->bg, &d->vu);
    vub_state_init(&d->xfer);
    socklen_t len = sizeof(d->sndbuf);
    if (getsockopt(sock, SOL_SOCKET, SO_SNDBUF, &d->sndbuf, &len) < 0 || d->sndbuf < 2 * VUB_REPLY_ROOM) {
        d->sndbuf = 0;   /* not a socket we can measure (tests): dispatch as before */
    }
    return d;
}

void vub_free(vub_dev *d)
{
    if (!d) {
        return;
    }
    if (d->initialised) {
        vub_discarder_stop(&d->bg);
        vub_state_destroy(&d->xfer);
        vu_deinit(&d->vu);
    }
    forget_regions(d);
    free(d);
}

int vub_dispatch(vub_dev *d)
{
    d->in_dispatch = 1;
    bool ok = vu_dispatch(&d->vu);
    ok = vub_vhost_check_state(&d->vu) && ok;   /* map_lock still held */
    d->in_dispatch = 0;

    if (d->map_locked) {
        d->map_locked = 0;
        pthread_mutex_unlock(&d->bg.map_lock);
    }
    if (!ok || d->peer_closed) {
        return 0;
    }
    return d->vu.broken ? 0 : 1;
}

/*
 * The peer shut its side down: a partial message will never be completed.
 * Only asked when one waits, so a message sent just before a close is still
 * handled.
 */
static int peer_shut_down(int sock)
{
    struct pollfd p = { .fd = sock, .events = POLLIN | POLLRDHUP };

    return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

int vub_dispatch_ready(vub_dev *d)
{
    int sock = d->vu.sock;
    struct {
        uint32_t request, flags, size;
    } __attribute__((packed)) hdr;
    int inq = 0, outq = 0;
    ssize_t n;

    if (d->peer_closed || d->vu.broken) {
        return VUB_DISPATCH_GONE;
    }
    if (ioctl(sock, FIONREAD, &inq) < 0) {
        d->peer_closed = 1;
        return VUB_DISPATCH_GONE;
    }
    /* No control buffer: a peek leaves SCM_RIGHTS fds with the message. */
    do {
        n = recv(sock, &hdr, sizeof(hdr), MSG_PEEK | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        d->peer_closed = 1;   /* end of file, or the socket failed */
        return VUB_DISPATCH_GONE;
    }
    if (n < 0) {
        return VUB_DISPATCH_IDLE;
    }
    if ((size_t)n < sizeof(hdr)) {
        /*
         * A peek stops at data carrying fds: a header split across sends
         * that is all there. cb_read_msg() refuses it (short header).
         */
        if ((size_t)inq < sizeof(hdr)) {
            goto incomplete;
        }
    } else if (hdr.size <= sizeof(((VhostUserMsg *)0)->payload) &&
               (size_t)inq < sizeof(hdr) + hdr.size) {
        goto incomplete;   /* (an oversized one is refused by cb_read_msg()) */
    }
    if (d->sndbuf > 0 && ioctl(sock, SIOCOUTQ, &outq) == 0 && outq > d->sndbuf - VUB_REPLY_ROOM) {
        return VUB_DISPATCH_WAIT_OUT;
    }
    return vub_dispatch(d) ? VUB_DISPATCH_OK : VUB_DISPATCH_GONE;

incomplete:
    if (peer_shut_down(sock)) {
        d->peer_closed = 1;
        return VUB_DISPATCH_GONE;
    }
    return VUB_DISPATCH_IDLE;
}

void vub_set_epoll_fd(vub_dev *d, int epfd)
{
    d->epfd = epfd;
}

static int config_change_flush(vub_dev *d);

/*
 * A kick, read here instead of by libvhost-user's vu_kick_cb(), whose
 * eventfd_read() would block the whole daemon if the frontend (which holds
 * the same eventfd) read the counter first, e.g. one eventfd passed as the
 * kick of two queues. RWF_NOWAIT never blocks, whatever the frontend did to
 * the file's O_NONBLOCK; before Linux 5.12 the plain read relies on the
 * O_NONBLOCK the firewall set. A counter found empty is a kick already taken.
 */
static void kick(vub_dev *d, int qidx, int fd)
{
    VuVirtq *vq = &d->vu.vq[qidx];
    uint64_t v;
    struct iovec iov = { .iov_base = &v, .iov_len = sizeof(v) };
    ssize_t n = preadv2(fd, &iov, 1, -1, RWF_NOWAIT);

    if (n < 0 && (errno == EOPNOTSUPP || errno == EINVAL || errno == ENOSYS)) {
        n = read(fd, &v, sizeof(v));
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return;
    }
    if (n != (ssize_t)sizeof(v)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "kick eventfd read (queue %d): %s", qidx,
                 n < 0 ? strerror(errno) : "short read");
        d->vu.broken = true;
        cb_panic(&d->vu, msg);
        cb_remove_watch(&d->vu, fd);
        return;
    }
    if (vq->handler) {
        vq->handler(&d->vu, qidx);
    }
}

void vub_fire_watch(vub_dev *d, int fd, int condition)
{
    vub_watches *w = watches_of(d);

    if (fd >= 0 && fd == d->cc_watch_fd) {
        (void)condition;
        config_change_flush(d);
        return;
    }

    for (int i = 0; i < VUB_MAX_WATCHES; i++) {
        if (w->slot[i].cb && w->slot[i].fd == fd) {
            /* libvhost-user watches kick fds only, with the queue index as data. */
            intptr_t q = (intptr_t)w->slot[i].data;
            if (q >= 0 && q < d->vu.max_queues && d->vu.vq[q].kick_fd == fd) {
                kick(d, (int)q, fd);
            } else {
                w->slot[i].cb(&d->vu, condition, w->slot[i].data);
            }
            return;
        }
    }
}

int vub_next_events(vub_dev *d, vub_event *out, int max)
{
    int n = 0;

    if (d->ev_lost && max > 0) {
        out[n++] = (vub_event){ .kind = VUB_EV_OVERFLOW, .a = d->ev_lost };
        d->ev_lost = 0;
    }
    while (n < max && d->ev_count > 0) {
        out[n++] = d->events[d->ev_head];
        d->ev_head = (d->ev_head + 1) % VUB_MAX_EVENTS;
        d->ev_count--;
    }
    return n;
}

const char *vub_last_panic(vub_dev *d)
{
    return d->panic_msg;
}

uint64_t vub_features(vub_dev *d)
{
    return d->vu.features;
}

uint64_t vub_protocol_features(vub_dev *d)
{
    return d->vu.protocol_features;
}

int vub_broken(vub_dev *d)
{
    return d->vu.broken ? 1 : 0;
}

/* --- config --- */

void vub_config_write(vub_dev *d, uint32_t off, const void *src, uint32_t len)
{
    if (off <= d->config_len && len <= d->config_len - off) {
        memcpy(d->config + off, src, len);
    }
}

void vub_config_read(vub_dev *d, uint32_t off, void *dst, uint32_t len)
{
    if (off <= d->config_len && len <= d->config_len - off) {
        memcpy(dst, d->config + off, len);
    }
}

/*
 * VHOST_USER_SLAVE_CONFIG_CHANGE_MSG: header {request, flags, size}, no
 * payload, no NEED_REPLY (QEMU may be waiting on us: never block). A full
 * channel must neither lose the change nor leave half a header in the
 * stream: the unsent rest waits for POLLOUT. One message covers any number
 * of changes, since QEMU re-reads the whole config when it gets it.
 */
static const struct {
    uint32_t request;
    uint32_t flags;
    uint32_t size;
} __attribute__((packed)) config_change_hdr = {
    .request = VHOST_USER_SLAVE_CONFIG_CHANGE_MSG,
    .flags = 1, /* VHOST_USER_VERSION */
    .size = 0,
};

static void watch_channel(vub_dev *d, int want)
{
    int fd = d->vu.slave_fd;

    if (want && d->cc_watch_fd < 0 && fd >= 0) {
        d->cc_watch_fd = fd;
        push_event(d, VUB_EV_SET_WATCH, fd, VU_WATCH_OUT, 0);
    } else if (!want && d->cc_watch_fd >= 0) {
        epoll_forget(d, d->cc_watch_fd);
        push_event(d, VUB_EV_REMOVE_WATCH, d->cc_watch_fd, 0, 0);
        d->cc_watch_fd = -1;
    }
}

/* 0 sent (or nothing owed), 1 still queued, -errno. slave_mutex held. */
static int config_change_send(vub_dev *d)
{
    int fd = d->vu.slave_fd;

    if (!d->cc_queued) {
        return 0;
    }
    if (fd < 0) {
        return -ENOTCONN;
    }
    if (fd != d->cc_fd) {
        /* A new channel: whatever was half sent went with the old one. */
        d->cc_fd = fd;
        d->cc_off = 0;
    }
    while (d->cc_off < sizeof(config_change_hdr)) {
        ssize_t n = send(fd, (const char *)&config_change_hdr + d->cc_off,
                         sizeof(config_change_hdr) - d->cc_off,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (d->cc_watch_fd < 0) {
                d->cc_waits++;
            }
            return 1;
        }
        if (n <= 0) {
            int err = n < 0 ? errno : EIO;
            d->cc_off = 0;
            d->cc_queued = 0;
            return -err;
        }
        d->cc_off += (uint32_t)n;
    }
    d->cc_off = 0;
    d->cc_queued = 0;
    d->cc_sent++;
    return 0;
}

static int config_change_flush(vub_dev *d)
{
    int ret;

    pthread_mutex_lock(&d->vu.slave_mutex);
    ret = config_change_send(d);
    pthread_mutex_unlock(&d->vu.slave_mutex);
    watch_channel(d, ret == 1);
    return ret;
}

int vub_config_change(vub_dev *d)
{
    d->cc_queued = 1;
    return config_change_flush(d);
}

int vub_config_change_pending(vub_dev *d, uint64_t out[2])
{
    out[0] = d->cc_sent;
    out[1] = d->cc_waits;
    return d->cc_queued;
}

/* --- queues --- */

static VuVirtq *queue(vub_dev *d, int qidx)
{
    if (qidx < 0 || qidx >= d->vu.max_queues) {
        return NULL;
    }
    return &d->vu.vq[qidx];
}

void vub_queue_enable_handler(vub_dev *d, int qidx, int enable)
{
    VuVirtq *vq = queue(d, qidx);

    if (vq) {
        vu_set_queue_handler(&d->vu, vq, enable ? cb_queue_handler : NULL);
    }
}

void *vub_pop(vub_dev *d, int qidx, uint32_t hdr[3], uint64_t *iov,
              uint32_t max_iov)
{
    VuVirtq *vq = queue(d, qidx);
    VuVirtqElement *elem;
    uint32_t k = 0;

    if (!vq || !vu_queue_started(&d->vu, vq) || d->vu.broken) {
        return NULL;
    }
    /*
     * libvhost-user 7.2 pops while avail->idx differs from its own index,
     * without bounding the distance: a guest that moves avail->idx by more
     * than the ring (or one step back) would make us replay stale entries
     * up to 65535 times. QEMU's virtio calls that a broken device.
     */
    if (vq->vring.avail && vq->vring.num) {
        uint16_t avail = le16toh(((volatile struct vring_avail *)vq->vring.avail)->idx);
        uint16_t ahead = (uint16_t)(avail - vq->last_avail_idx);
        if (ahead > vq->vring.num) {
            char msg[96];
            snprintf(msg, sizeof(msg), "Guest moved avail index from %u to %u (queue %d, size %u)",
                     vq->last_avail_idx, avail, qidx, vq->vring.num);
            d->vu.broken = true;
            cb_panic(&d->vu, msg);
            return NULL;
        }
    }
    elem = vu_queue_pop(&d->vu, vq, sizeof(VuVirtqElement));
    if (!elem) {
        return NULL;
    }
    hdr[0] = elem->index;
    hdr[1] = elem->out_num;
    hdr[2] = elem->in_num;
    for (unsigned i = 0; i < elem->out_num && k < max_iov; i++, k++) {
        iov[2 * k] = (uint64_t)(uintptr_t)elem->out_sg[i].iov_base;
        iov[2 * k + 1] = elem->out_sg[i].iov_len;
    }
    for (unsigned i = 0; i < elem->in_num && k < max_iov; i++, k++) {
        iov[2 * k] = (uint64_t)(uintptr_t)elem->in_sg[i].iov_base;
        iov[2 * k + 1] = elem->in_sg[i].iov_len;
    }
    return elem;
}

void vub_push(vub_dev *d, int qidx, void *elem, uint32_t len)
{
    VuVirtq *vq = queue(d, qidx);

    if (vq && elem) {
        vu_queue_push(&d->vu, vq, elem, len);
    }
    free(elem);
}

void vub_drop(void *elem)
{
    free(elem);
}

/*
 * The firewall made the call eventfd non-blocking, but the frontend shares
 * its O_NONBLOCK and may clear it: never write to a counter that is full
 * (a write would block; an interrupt is pending there anyway).
 */
static int call_writable(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLOUT };

    return poll(&p, 1, 0) == 1 && (p.revents & POLLOUT);
}

void vub_notify(vub_dev *d, int qidx)
{
    VuVirtq *vq = queue(d, qidx);

    /*
     * No call fd yet (the frontend kicked before SET_VRING_CALL arrived):
     * libvhost-user would treat the failed write as fatal; the driver sees
     * the used ring at its next poll instead.
     */
    if (vq && vq->call_fd >= 0 && call_writable(vq->call_fd)) {
        vu_queue_notify(&d->vu, vq);
    }
}

int vub_queue_started(vub_dev *d, int qidx)
{
    VuVirtq *vq = queue(d, qidx);

    return vq && vu_queue_started(&d->vu, vq) ? 1 : 0;
}

uint32_t vub_queue_last_avail(vub_dev *d, int qidx)
{
    VuVirtq *vq = queue(d, qidx);

    return vq ? vq->last_avail_idx : 0;
}

/* --- guest memory --- */

uint64_t vub_gpa_to_va(vub_dev *d, uint64_t gpa, uint64_t *plen)
{
    return (uint64_t)(uintptr_t)vu_gpa_to_va(&d->vu, plen, gpa);
}

uint64_t vub_ram_end(vub_dev *d)
{
    uint64_t end = 0;

    for (uint32_t i = 0; i < d->vu.nregions; i++) {
        uint64_t e = d->vu.regions[i].gpa + d->vu.regions[i].size;
        if (e > end) {
            end = e;
        }
    }
    return end;
}

uint32_t vub_nregions(vub_dev *d)
{
    return d->vu.nregions;
}

int vub_region(vub_dev *d, uint32_t i, uint64_t out[3])
{
    if (i >= d->vu.nregions) {
        return -1;
    }
    out[0] = d->vu.regions[i].gpa;
    out[1] = d->vu.regions[i].size;
    out[2] = (uint64_t)sysconf(_SC_PAGESIZE);
    for (uint32_t j = 0; j < d->npages; j++) {
        if (d->pages[j].gpa == out[0]) {
            out[2] = d->pages[j].page;
        }
    }
    return 0;
}

void vub_read(uint64_t hva, void *dst, size_t len)
{
    memcpy(dst, (const void *)(uintptr_t)hva, len);
}

void vub_write(uint64_t hva, const void *src, size_t len)
{
    memcpy((void *)(uintptr_t)hva, src, len);
}

int64_t vub_discard(vub_dev *d, uint64_t gpa, uint64_t len)
{
    uint64_t done = 0;

    if (len == 0 || gpa + len < gpa) {
        return -EINVAL;
    }
    /* Check the whole range first: discard nothing unless all is RAM. */
    for (uint64_t at = gpa; at < gpa + len;) {
        uint64_t plen = gpa + len - at;
        if (!vu_gpa_to_va(&d->vu, &plen, at) || plen == 0) {
            return -EFAULT;
        }
        at += plen;
    }
    while (done < len) {
        uint64_t plen = len - done;
        void *va = vu_gpa_to_va(&d->vu, &plen, gpa + done);
        if (madvise(va, plen, MADV_REMOVE) < 0) {
            return -errno;
        }
        vub_log_range(&d->vu, gpa + done, plen);
        done += plen;
    }
    return (int64_t)done;
}

/* 0 if vub_discard_hva() may discard [hva, hva+len), else -errno; *gpa set. */
static int hva_check(vub_dev *d, uint64_t hva, uint64_t len, uint64_t *gpa)
{
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);

    if (len == 0 || hva + len < hva || (hva | len) & (page - 1)) {
        return -EINVAL;
    }
    for (uint32_t i = 0; i < d->vu.nregions; i++) {
        VuDevRegion *r = &d->vu.regions[i];
        uint64_t start = r->mmap_addr + r->mmap_offset;
        if (hva >= start && hva + len <= start + r->size) {
            *gpa = r->gpa + (hva - start);
            return 0;
        }
    }
    return -EFAULT;
}

int64_t vub_discard_hva(vub_dev *d, uint64_t hva, uint64_t len)
{
    uint64_t gpa;
    int ret = hva_check(d, hva, len, &gpa);

    if (ret < 0) {
        return ret;
    }
    if (madvise((void *)(uintptr_t)hva, len, MADV_REMOVE) < 0) {
        return -errno;
    }
    vub_log_range(&d->vu, gpa, len);
    return (int64_t)len;
}

uint64_t vub_hva_page(vub_dev *d, uint64_t hva)
{
    uint64_t gpa, out[3];

    if (hva_check(d, hva & ~(uint64_t)(sysconf(_SC_PAGESIZE) - 1), (uint64_t)sysconf(_SC_PAGESIZE), &gpa) < 0) {
        return 0;
    }
    for (uint32_t i = 0; i < d->vu.nregions; i++) {
        if (gpa >= d->vu.regions[i].gpa && gpa - d->vu.regions[i].gpa < d->vu.regions[i].size) {
            vub_region(d, i, out);
            return out[2];
        }
    }
    return 0;
}

int vub_hva_in_ram(vub_dev *d, uint64_t hva, uint64_t len)
{
    uint64_t gpa;

    return hva_check(d, hva, len, &gpa) == 0;
}

/* --- background discard (vub-discard.c) --- */

int vub_bg_start(vub_dev *d)
{
    return vub_discarder_start(&d->bg);
}

int vub_bg_submit(vub_dev *d, const uint64_t *pairs, uint32_t n)
{
    return vub_discarder_submit(&d->bg, pairs, n);
}

int64_t vub_bg_cancel(vub_dev *d, uint64_t gpa, uint64_t len)
{
    return vub_discarder_cancel(&d->bg, gpa, len);
}

int64_t vub_bg_try_cancel(vub_dev *d, uint64_t gpa, uint64_t len)
{
    return vub_discarder_try_cancel(&d->bg, gpa, len);
}

int64_t vub_bg_drop(vub_dev *d)
{
    return vub_discarder_drop(&d->bg);
}

void vub_bg_resume(vub_dev *d)
{
    vub_discarder_resume(&d->bg);
}

uint32_t vub_bg_export(vub_dev *d, uint64_t *pairs, uint32_t max)
{
    return vub_discarder_export(&d->bg, pairs, max);
}

int vub_bg_collect(vub_dev *d, uint64_t out[6])
{
    return vub_discarder_collect(&d->bg, out);
}

void vub_bg_wait(vub_dev *d)
{
    vub_discarder_wait(&d->bg);
}

/* --- sockets --- */

int vub_send_fds(int sock, const void *buf, size_t len, const int *fds,
                 int nfds)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    char control[CMSG_SPACE(sizeof(int) * 16)];
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    ssize_t n;

    if (nfds < 0 || nfds > 16) {
        return -EINVAL;
    }
    if (nfds > 0) {
        memset(control, 0, sizeof(control));
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    do {
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : (int)n;
}

ssize_t vub_recv_fds(int sock, void *buf, size_t len, int *fds, int maxfds,
                     int *nfds)
{
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    char control[CMSG_SPACE(sizeof(int) * 16)];
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1,
        .msg_control = control, .msg_controllen = sizeof(control),
    };
    ssize_t n;

    *nfds = 0;
    do {
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return -errno;
    }
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
            continue;
        }
        int count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int *in = (int *)CMSG_DATA(c);
        for (int i = 0; i < count; i++) {
            if (*nfds < maxfds) {
                fds[(*nfds)++] = in[i];
            } else {
                close(in[i]);
            }
        }
    }
    return n;
}

static int unix_addr(const char *path, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa->sun_path)) {
        return -ENAMETOOLONG;
    }
    strcpy(sa->sun_path, path);
    return 0;
}

int vub_listen_unix(const char *path, int backlog)
{
    struct sockaddr_un sa;
    int fd, ret = unix_addr(path, &sa);

    if (ret < 0) {
        return ret;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return -errno;
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(fd, backlog) < 0) {
        ret = -errno;
        close(fd);
        return ret;
    }
    return fd;
}

int vub_connect_unix(const char *path)
{
    struct sockaddr_un sa;
    int fd, ret = unix_addr(path, &sa);

    if (ret < 0) {
        return ret;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        ret = -errno;
        close(fd);
        return ret;
    }
    return fd;
}

/* --- device state transfer --- */

int vub_state_save(vub_dev *d, const void *buf, size_t len, int failed)
{
    return -vub_state_give(&d->xfer, buf, len, failed);
}

int64_t vub_state_take(vub_dev *d, void *dst, size_t cap)
{
    size_t len;
    const uint8_t *b = vub_state_loaded(&d->xfer, &len);

    if (!b) {
        return -ENOENT;
    }
    if (len > cap) {
        return -ENOSPC;
    }
    memcpy(dst, b, len);
    return (int64_t)len;
}

int vub_state_reply(vub_dev *d, int failed)
{
    struct __attribute__((packed)) {
        uint32_t request, flags, size;
        uint64_t u64;
    } r = {
        VUB_USER_CHECK_DEVICE_STATE, VUB_USER_VERSION | VHOST_USER_REPLY_MASK, 8, failed ? 1 : 0,
    };
    size_t off = 0;

    if (!d->state_reply_owed) {
        return -EINVAL;
    }
    d->state_reply_owed = 0;
    vub_state_reset(&d->xfer);   /* the bytes were taken */
    while (off < sizeof(r)) {
        ssize_t n = send(d->vu.sock, (char *)&r + off, sizeof(r) - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            struct pollfd p = { .fd = d->vu.sock, .events = POLLOUT };
            if (poll(&p, 1, 1000) <= 0) {
                return -ETIMEDOUT;   /* a frontend that reads no replies: it gets none */
            }
        } else {
            return n < 0 ? -errno : -EIO;
        }
    }
    return 0;
}
