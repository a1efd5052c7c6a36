/*
 * vub-vhost-check: see vub-vhost-check.h. Our own code.
 *
 * Payload sizes are the ones QEMU 7.2 sends (hw/virtio/vhost-user.c);
 * anything else is refused rather than guessed at.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "vub-vhost-check.h"
#include "vub-state.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define RING_MAX 32768u
#define CONFIG_HDR 12u                      /* VhostUserConfig: offset, size, flags */
#define LOG_CHUNK (VHOST_LOG_PAGE * 8ull)   /* guest bytes per log byte */
#define BIT(f) (1ull << (f))
#define POW2(n) ((n) && !((n) & ((n) - 1)))

/* Features libvhost-user adds to the device's own in its GET_FEATURES answer. */
#define LVU_FEATURES (BIT(VIRTIO_F_NOTIFY_ON_EMPTY) | BIT(VIRTIO_RING_F_INDIRECT_DESC) | \
                      BIT(VIRTIO_RING_F_EVENT_IDX) | BIT(VIRTIO_F_VERSION_1) | \
                      BIT(VHOST_F_LOG_ALL) | BIT(VHOST_USER_F_PROTOCOL_FEATURES))
/* Protocol features it may offer (PAGEFAULT only where userfaultfd works). */
#define LVU_PROTOCOL (BIT(VHOST_USER_PROTOCOL_F_MQ) | BIT(VHOST_USER_PROTOCOL_F_LOG_SHMFD) | \
                      BIT(VHOST_USER_PROTOCOL_F_SLAVE_REQ) | BIT(VHOST_USER_PROTOCOL_F_HOST_NOTIFIER) | \
                      BIT(VHOST_USER_PROTOCOL_F_SLAVE_SEND_FD) | BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK) | \
                      BIT(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS) | BIT(VHOST_USER_PROTOCOL_F_PAGEFAULT))

/* Refuse the message (see refuse()) when cond holds. */
#define REFUSE_IF(cond, ...) do { if (cond) { return refuse(dev, vmsg, __VA_ARGS__); } } while (0)

#define VAR (-1)   /* checked by the request's own rule */
#define NEED(f) .feature = VHOST_USER_PROTOCOL_F_##f, .fname = #f

/* What each request must look like; requests without a rule are refused. */
static const struct rule {
    bool ok;
    int16_t size;        /* payload bytes, or VAR */
    int8_t fds;          /* fds, or VAR */
    int8_t feature;      /* protocol feature it needs (0: none, MQ is never needed) */
    const char *fname;
    const char *no;      /* why it is refused */
} rules[VHOST_USER_MAX] = {
    [VHOST_USER_GET_FEATURES] = { true, 0, 0 },
    [VHOST_USER_SET_FEATURES] = { true, 8, 0 },
    [VHOST_USER_SET_OWNER] = { true, 0, 0 },
    [VHOST_USER_RESET_OWNER] = { true, 0, 0 },
    [VHOST_USER_SET_MEM_TABLE] = { true, VAR, VAR },
    [VHOST_USER_SET_LOG_BASE] = { true, 16, 1, NEED(LOG_SHMFD) },
    [VHOST_USER_SET_LOG_FD] = { true, 0, 1 },
    [VHOST_USER_SET_VRING_NUM] = { true, 8, 0 },
    [VHOST_USER_SET_VRING_ADDR] = { true, 40, 0 },
    [VHOST_USER_SET_VRING_BASE] = { true, 8, 0 },
    [VHOST_USER_GET_VRING_BASE] = { true, 8, 0 },
    [VHOST_USER_SET_VRING_KICK] = { true, 8, VAR },
    [VHOST_USER_SET_VRING_CALL] = { true, 8, VAR },
    [VHOST_USER_SET_VRING_ERR] = { true, 8, VAR },
    [VHOST_USER_GET_PROTOCOL_FEATURES] = { true, 0, 0 },
    [VHOST_USER_SET_PROTOCOL_FEATURES] = { true, 8, 0 },
    [VHOST_USER_GET_QUEUE_NUM] = { true, 0, 0 },
    [VHOST_USER_SET_VRING_ENABLE] = { true, 8, 0 },
    [VHOST_USER_SET_SLAVE_REQ_FD] = { true, 0, 1, NEED(SLAVE_REQ) },
    [VHOST_USER_GET_CONFIG] = { true, VAR, 0, NEED(CONFIG) },
    [VHOST_USER_SET_CONFIG] = { true, VAR, 0, NEED(CONFIG) },
    [VHOST_USER_POSTCOPY_ADVISE] = { .no = "postcopy is not supported (PAGEFAULT is not offered: ballooned pages are discarded)" },
    [VHOST_USER_POSTCOPY_LISTEN] = { .no = "postcopy is not supported (PAGEFAULT is not offered: ballooned pages are discarded)" },
    [VHOST_USER_POSTCOPY_END] = { .no = "postcopy is not supported (PAGEFAULT is not offered: ballooned pages are discarded)" },
    /* Offered or not: libvhost-user trusts the indices in the shared area. */
    [VHOST_USER_GET_INFLIGHT_FD] = { .no = "inflight tracking is not supported" },
    [VHOST_USER_SET_INFLIGHT_FD] = { .no = "inflight tracking is not supported" },
    [VHOST_USER_VRING_KICK] = { true, 8, 0, NEED(INBAND_NOTIFICATIONS) },
    [VHOST_USER_GET_MAX_MEM_SLOTS] = { true, 0, 0 },
    [VHOST_USER_ADD_MEM_REG] = { true, 40, 1, NEED(CONFIGURE_MEM_SLOTS) },
    [VHOST_USER_REM_MEM_REG] = { true, 40, VAR, NEED(CONFIGURE_MEM_SLOTS) },
};

static const uint64_t ring_align[3] = { 16, 2, 4 };
static const char *const ring_part[3] = { "descriptor table", "avail ring", "used ring" };

/* The request being dispatched on this thread: the state check names it. */
static __thread uint32_t dispatching;

static const char *req_name(uint32_t req, char *buf, size_t len)
{
    const char *s = req < VHOST_USER_MAX ? vu_request_to_string(req) : NULL;

    if (req == VUB_USER_SET_DEVICE_STATE_FD) {
        return "SET_DEVICE_STATE_FD";
    }
    if (req == VUB_USER_CHECK_DEVICE_STATE) {
        return "CHECK_DEVICE_STATE";
    }

    if (s && strncmp(s, "VHOST_USER_", 11) == 0) {
        return s + 11;
    }
    snprintf(buf, len, "request %" PRIu32, req);
    return buf;
}

static bool __attribute__((format(printf, 3, 4)))
refuse(VuDev *dev, VhostUserMsg *vmsg, const char *fmt, ...)
{
    char why[192], name[24], msg[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    snprintf(msg, sizeof(msg), "invalid vhost-user message %.24s: %.192s",
             req_name((uint32_t)vmsg->request, name, sizeof(name)), why);
    for (int i = 0; i < vmsg->fd_num; i++) {
        close(vmsg->fds[i]);
    }
    vmsg->fd_num = 0;
    dev->broken = true;
    dev->panic(dev, msg);
    return false;
}

/* First violation wins: later ones are usually its consequences. */
static void __attribute__((format(printf, 3, 4)))
note(char *why, size_t len, const char *fmt, ...)
{
    va_list ap;

    if (!why[0]) {
        va_start(ap, fmt);
        vsnprintf(why, len, fmt, ap);
        va_end(ap);
    }
}

static bool is_eventfd(int fd)
{
    static const char want[] = "anon_inode:[eventfd]";
    char path[32], link[sizeof(want)];

    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    return readlink(path, link, sizeof(link)) == (ssize_t)sizeof(want) - 1 &&
           memcmp(link, want, sizeof(want) - 1) == 0;
}

/*
 * An eventfd, made non-blocking: libvhost-user reads and writes it with
 * eventfd_read()/eventfd_write(), which would block the whole daemon on a
 * blocking one whose counter the frontend emptied or filled. O_NONBLOCK is
 * the open file's, so the frontend's copy turns non-blocking too (QEMU's
 * event notifiers are already).
 */
static bool is_nonblocking_eventfd(int fd)
{
    int fl;

    if (!is_eventfd(fd) || (fl = fcntl(fd, F_GETFL)) < 0) {
        return false;
    }
    return (fl & O_NONBLOCK) || fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0;
}

/*
 * [off, off+len) of fd must be a regular file's and mappable the way
 * libvhost-user maps it: past the end of the file an access is SIGBUS, and
 * a failed mmap leaves MAP_FAILED or a stale address in its tables.
 */
static bool bad_file(char *why, size_t n, int fd, uint64_t off, uint64_t len)
{
    struct stat st;
    void *p;

    if (len == 0 || off + len < off || off % (uint64_t)sysconf(_SC_PAGESIZE)) {
        snprintf(why, n, "0x%" PRIx64 " bytes at file offset 0x%" PRIx64, len, off);
        return true;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(why, n, "fd is not a regular file");
        return true;
    }
    if ((uint64_t)st.st_size < off + len) {
        snprintf(why, n, "0x%" PRIx64 " bytes at file offset 0x%" PRIx64 " past the end of the file (0x%" PRIx64 ")",
                 len, off, (uint64_t)st.st_size);
        return true;
    }
    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, (off_t)off);
    if (p == MAP_FAILED) {
        snprintf(why, n, "cannot map 0x%" PRIx64 " bytes: %s", len, strerror(errno));
        return true;
    }
    munmap(p, len);
    return false;
}

static bool bad_region(char *why, size_t n, const VhostUserMemoryRegion *m, int fd)
{
    uint64_t size = m->memory_size;

    if (size == 0 || m->guest_phys_addr + size < m->guest_phys_addr ||
        m->userspace_addr + size < m->userspace_addr || m->mmap_offset + size < m->mmap_offset) {
        snprintf(why, n, "gpa 0x%" PRIx64 " size 0x%" PRIx64 " is empty or wraps around",
                 m->guest_phys_addr, size);
        return true;
    }
    return bad_file(why, n, fd, 0, m->mmap_offset + size);
}

/*
 * Overlapping regions make a guest address mean two places. Touching ones
 * are fine (NUMA guests with several memory backends, DIMMs): the copy of a
 * descriptor table spanning two of them, which libvhost-user 7.2 got wrong,
 * is fixed by native/patches/0001-*.
 */
static bool overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

/* Descriptor table, avail ring, used ring (event fields included). */
static void ring_layout(uint64_t num, uint64_t len[3])
{
    len[0] = 16 * num;
    len[1] = 4 + 2 * num + 2;
    len[2] = 4 + 8 * num + 2;
}

/* A ring part given by QEMU address, translated as libvhost-user does. */
static bool bad_ring_qva(const VuDev *dev, char *why, size_t n, int part, uint64_t qva, uint64_t len)
{
    for (uint32_t i = 0; i < dev->nregions; i++) {
        const VuDevRegion *r = &dev->regions[i];
        uint64_t off = qva - r->qva;

        if (qva >= r->qva && off < r->size) {
            if (len <= r->size - off && (r->mmap_offset + off) % ring_align[part] == 0) {
                return false;
            }
            break;
        }
    }
    snprintf(why, n, "%s at 0x%" PRIx64 " (%" PRIu64 " bytes) is not in one region or misaligned",
             ring_part[part], qva, len);
    return true;
}

/* A host range must lie inside one region's mapping. */
static bool in_ram(const VuDev *dev, uintptr_t hva, uint64_t len)
{
    for (uint32_t i = 0; i < dev->nregions; i++) {
        const VuDevRegion *r = &dev->regions[i];
        uint64_t start = r->mmap_addr + r->mmap_offset;

        if (hva >= start && hva - start <= r->size && len <= r->size - (hva - start)) {
            return true;
        }
    }
    return false;
}

static bool check_mem(VuDev *dev, VhostUserMsg *vmsg)
{
    char why[160];
    VhostUserMemory mem;
    VhostUserMemRegMsg reg;
    uint32_t n;

    if (vmsg->request == VHOST_USER_SET_MEM_TABLE) {
        memcpy(&mem, &vmsg->payload.memory, sizeof(mem));
        n = vmsg->size >= 8 ? mem.nregions : 0;
        REFUSE_IF(n > VHOST_MEMORY_BASELINE_NREGIONS || vmsg->size != 8 + n * sizeof(mem.regions[0]) ||
                  vmsg->fd_num != (int)n, "%" PRIu32 " regions (at most %d) in %" PRIu32 " bytes with %d fds",
                  n, VHOST_MEMORY_BASELINE_NREGIONS, vmsg->size, vmsg->fd_num);
        for (uint32_t i = 0; i < n; i++) {
            REFUSE_IF(bad_region(why, sizeof(why), &mem.regions[i], vmsg->fds[i]),
                      "region %" PRIu32 ": %s", i, why);
            for (uint32_t j = 0; j < i; j++) {
                REFUSE_IF(overlap(mem.regions[i].guest_phys_addr, mem.regions[i].memory_size,
                                  mem.regions[j].guest_phys_addr, mem.regions[j].memory_size),
                          "regions %" PRIu32 " and %" PRIu32 " overlap", j, i);
            }
        }
        return true;
    }
    if (vmsg->request == VHOST_USER_REM_MEM_REG) {
        /* Older QEMUs send the region's fd along. */
        return vmsg->fd_num <= 1 || refuse(dev, vmsg, "%d fds", vmsg->fd_num);
    }
    memcpy(&reg, &vmsg->payload.memreg, sizeof(reg));
    REFUSE_IF(dev->nregions >= VHOST_USER_MAX_RAM_SLOTS, "all %d memory slots are in use",
              VHOST_USER_MAX_RAM_SLOTS);
    REFUSE_IF(bad_region(why, sizeof(why), &reg.region, vmsg->fds[0]), "%s", why);
    for (uint32_t i = 0; i < dev->nregions; i++) {
        REFUSE_IF(overlap(reg.region.guest_phys_addr, reg.region.memory_size, dev->regions[i].gpa, dev->regions[i].size),
                  "gpa 0x%" PRIx64 " size 0x%" PRIx64 " overlaps region %" PRIu32,
                  reg.region.guest_phys_addr, reg.region.memory_size, i);
    }
    return true;
}

static bool check_vring(VuDev *dev, VhostUserMsg *vmsg)
{
    char why[160];
    struct vhost_vring_state st;
    struct vhost_vring_addr a;
    uint64_t len[3];
    VuVirtq *vq;

    memcpy(&st, &vmsg->payload.state, sizeof(st));   /* index first in both */
    REFUSE_IF(st.index >= dev->max_queues, "queue index %u >= %u", st.index, dev->max_queues);
    vq = &dev->vq[st.index];
    switch (vmsg->request) {
    case VHOST_USER_SET_VRING_NUM:
        REFUSE_IF(!POW2(st.num) || st.num > RING_MAX, "queue size %u is not a power of two <= %u",
                  st.num, RING_MAX);
        return !vq->started || refuse(dev, vmsg, "queue %u is running", st.index);
    case VHOST_USER_SET_VRING_BASE:
        return st.num <= 0xffff || refuse(dev, vmsg, "base %u > 65535", st.num);
    case VHOST_USER_SET_VRING_ENABLE:
        return st.num <= 1 || refuse(dev, vmsg, "enable %u", st.num);
    case VHOST_USER_SET_VRING_ADDR:
        break;
    default:
        return true;
    }
    memcpy(&a, &vmsg->payload.addr, sizeof(a));
    REFUSE_IF(a.flags & ~(1u << VHOST_VRING_F_LOG), "flags 0x%x", a.flags);
    REFUSE_IF(vq->vring.num == 0, "queue %u has no size (SET_VRING_NUM first)", a.index);
    ring_layout(vq->vring.num, len);
    REFUSE_IF(bad_ring_qva(dev, why, sizeof(why), 0, a.desc_user_addr, len[0]) ||
              bad_ring_qva(dev, why, sizeof(why), 1, a.avail_user_addr, len[1]) ||
              bad_ring_qva(dev, why, sizeof(why), 2, a.used_user_addr, len[2]),
              "queue %u: %s", a.index, why);
    return true;
}

static bool check_special(VuDev *dev, VhostUserMsg *vmsg)
{
    char why[160];
    uint64_t u = vmsg->payload.u64, offered;
    uint32_t c[3];   /* VhostUserConfig offset, size, flags */
    VhostUserLog log;
    struct stat st;

    switch (vmsg->request) {
    case VHOST_USER_SET_FEATURES:
        offered = LVU_FEATURES | (dev->iface->get_features ? dev->iface->get_features(dev) : 0);
        return !(u & ~offered) || refuse(dev, vmsg, "features 0x%" PRIx64 " were not offered", u & ~offered);
    case VHOST_USER_SET_PROTOCOL_FEATURES:
        offered = LVU_PROTOCOL | (dev->iface->get_protocol_features ? dev->iface->get_protocol_features(dev) : 0);
        if (dev->iface->get_config && dev->iface->set_config) {
            offered |= BIT(VHOST_USER_PROTOCOL_F_CONFIG);
        }
        return !(u & ~offered) || refuse(dev, vmsg, "protocol features 0x%" PRIx64 " were not offered", u & ~offered);
    case VHOST_USER_SET_LOG_BASE:
        memcpy(&log, &vmsg->payload.log, sizeof(log));
        return !bad_file(why, sizeof(why), vmsg->fds[0], log.mmap_offset, log.mmap_size) ||
               refuse(dev, vmsg, "log: %s", why);
    case VHOST_USER_SET_LOG_FD:
        return is_nonblocking_eventfd(vmsg->fds[0]) || refuse(dev, vmsg, "fd is not an eventfd");
    case VHOST_USER_SET_VRING_KICK:
    case VHOST_USER_SET_VRING_CALL:
    case VHOST_USER_SET_VRING_ERR:
        REFUSE_IF(u & ~(uint64_t)(VHOST_USER_VRING_IDX_MASK | VHOST_USER_VRING_NOFD_MASK) ||
                  (u & VHOST_USER_VRING_IDX_MASK) >= dev->max_queues,
                  "payload 0x%" PRIx64 " (queue index, NOFD) with %u queues", u, dev->max_queues);
        REFUSE_IF(vmsg->fd_num != (u & VHOST_USER_VRING_NOFD_MASK ? 0 : 1),
                  "%d fds with NOFD %s", vmsg->fd_num, u & VHOST_USER_VRING_NOFD_MASK ? "set" : "clear");
        return vmsg->fd_num == 0 || is_nonblocking_eventfd(vmsg->fds[0]) || refuse(dev, vmsg, "fd is not an eventfd");
    case VHOST_USER_SET_SLAVE_REQ_FD:
        return (fstat(vmsg->fds[0], &st) == 0 && S_ISSOCK(st.st_mode)) || refuse(dev, vmsg, "fd is not a socket");
    case VHOST_USER_GET_CONFIG:
        /*
         * The reply reuses the request's size: it must fit the region. An
         * inner size beyond it is the shim's to refuse (cb_get_config answers
         * an empty payload): a request QEMU can live with, not a broken device.
         */
        REFUSE_IF(vmsg->size < CONFIG_HDR || vmsg->size > CONFIG_HDR + VHOST_USER_MAX_CONFIG_SIZE,
                  "%" PRIu32 " bytes (a config header and at most %d config bytes)", vmsg->size, VHOST_USER_MAX_CONFIG_SIZE);
        return true;
    case VHOST_USER_SET_CONFIG:
        memcpy(c, &vmsg->payload.config, sizeof(c));
        REFUSE_IF(vmsg->size < CONFIG_HDR || c[0] > VHOST_USER_MAX_CONFIG_SIZE ||
                  c[1] > VHOST_USER_MAX_CONFIG_SIZE - c[0] || vmsg->size != CONFIG_HDR + c[1] ||
                  c[2] > VHOST_SET_CONFIG_TYPE_MIGRATION,
                  "config offset %" PRIu32 " size %" PRIu32 " flags %" PRIu32 " in %" PRIu32
                  " bytes (at most %d config bytes)", c[0], c[1], c[2], vmsg->size, VHOST_USER_MAX_CONFIG_SIZE);
        return true;
    }
    return true;
}

bool vub_vhost_check_msg(VuDev *dev, VhostUserMsg *vmsg)
{
    uint32_t req = (uint32_t)vmsg->request;
    const struct rule *r = req < VHOST_USER_MAX ? &rules[req] : NULL;

    dispatching = req;
    REFUSE_IF((vmsg->flags & VHOST_USER_VERSION_MASK) != 1 ||
              vmsg->flags & ~(uint32_t)(VHOST_USER_VERSION_MASK | VHOST_USER_NEED_REPLY_MASK),
              "flags 0x%" PRIx32, vmsg->flags);
    /* Newer than libvhost-user 7.2 (vub-state.h): handled by the shim. */
    if (req == VUB_USER_SET_DEVICE_STATE_FD || req == VUB_USER_CHECK_DEVICE_STATE) {
        bool set = req == VUB_USER_SET_DEVICE_STATE_FD;
        REFUSE_IF(!(dev->protocol_features & BIT(VUB_PROTOCOL_F_DEVICE_STATE)), "DEVICE_STATE was not negotiated");
        REFUSE_IF(vmsg->size != (set ? 8u : 0u), "payload of %" PRIu32 " bytes, want %u", vmsg->size, set ? 8u : 0u);
        REFUSE_IF(vmsg->fd_num != (set ? 1 : 0), "%d fds, want %d", vmsg->fd_num, set ? 1 : 0);
        return true;
    }
    /* Unknown requests include NONE, on which libvhost-user calls exit(0). */
    REFUSE_IF(!r || !r->ok, "%s", r && r->no ? r->no : "unsupported request");
    REFUSE_IF(r->feature && !(dev->protocol_features & BIT(r->feature)), "%s was not negotiated", r->fname);
    REFUSE_IF(r->size != VAR && vmsg->size != (uint32_t)r->size,
              "payload of %" PRIu32 " bytes, want %d", vmsg->size, r->size);
    REFUSE_IF(r->fds != VAR && vmsg->fd_num != r->fds, "%d fds, want %d", vmsg->fd_num, r->fds);
    switch (req) {
    case VHOST_USER_SET_MEM_TABLE:
    case VHOST_USER_ADD_MEM_REG:
    case VHOST_USER_REM_MEM_REG:
        return check_mem(dev, vmsg);
    case VHOST_USER_SET_VRING_NUM:
    case VHOST_USER_SET_VRING_ADDR:
    case VHOST_USER_SET_VRING_BASE:
    case VHOST_USER_GET_VRING_BASE:
    case VHOST_USER_SET_VRING_ENABLE:
    case VHOST_USER_VRING_KICK:
        return check_vring(dev, vmsg);
    default:
        return check_special(dev, vmsg);
    }
}

bool vub_vhost_check_state(VuDev *dev)
{
    char why[192] = "", name[24], msg[256];
    uint32_t req = dispatching;
    bool logging = dev->features & BIT(VHOST_F_LOG_ALL) && dev->log_table;
    uint64_t len[3];

    dispatching = 0;
    for (uint32_t i = 0; i < dev->nregions; i++) {
        VuDevRegion *r = &dev->regions[i];

        if (r->mmap_addr == 0 || r->mmap_addr == (uint64_t)(uintptr_t)MAP_FAILED) {
            note(why, sizeof(why), "region gpa 0x%" PRIx64 " could not be mapped", r->gpa);
            memmove(r, r + 1, (--dev->nregions - i) * sizeof(*r));
            memset(&dev->regions[dev->nregions], 0, sizeof(*r));
            i--;
        }
    }
    if (dev->log_table == MAP_FAILED) {
        note(why, sizeof(why), "the log could not be mapped");
        dev->log_table = NULL;
        dev->log_size = 0;
        logging = false;
    }
    for (uint32_t i = 0; logging && i < dev->nregions; i++) {
        const VuDevRegion *r = &dev->regions[i];

        if ((r->gpa + r->size - 1) / LOG_CHUNK >= dev->log_size) {
            note(why, sizeof(why), "the log (0x%" PRIx64 " bytes) does not cover region gpa 0x%" PRIx64 " size 0x%" PRIx64,
                 dev->log_size, r->gpa, r->size);
        }
    }
    for (uint32_t q = 0; q < dev->max_queues; q++) {
        VuVirtq *vq = &dev->vq[q];
        VuRing *ring = &vq->vring;
        const void *part[3] = { ring->desc, ring->avail, ring->used };
        const uint64_t qva[3] = { vq->vra.desc_user_addr, vq->vra.avail_user_addr, vq->vra.used_user_addr };
        int bad = -1;

        if (!ring->desc && !ring->avail && !ring->used) {
            continue;
        }
        ring_layout(ring->num, len);
        for (int p = 0; p < 3 && bad < 0; p++) {
            uintptr_t hva = (uintptr_t)part[p];

            if (!POW2(ring->num) || ring->num > RING_MAX || !hva || !in_ram(dev, hva, len[p]) ||
                hva % ring_align[p]) {
                bad = p;
            }
        }
        if (bad >= 0 && !vq->started) {
            /*
             * A stopped ring's old addresses (a new size, a region gone):
             * QEMU sends SET_VRING_ADDR before it starts the ring again.
             * Forgotten, libvhost-user neither remaps nor touches them.
             */
            ring->desc = NULL;
            ring->avail = NULL;
            ring->used = NULL;
            continue;
        }
        if (bad >= 0) {
            note(why, sizeof(why), "queue %" PRIu32 " (size %u): %s at 0x%" PRIx64 " is not in guest RAM",
                 q, ring->num, ring_part[bad], qva[bad]);
        } else if (logging && (ring->log_guest_addr + len[2] - 2 < ring->log_guest_addr ||
                               (ring->log_guest_addr + len[2] - 3) / LOG_CHUNK >= dev->log_size)) {
            /* Used index and elements are logged at log_guest_addr + 2 .. + len - 2. */
            note(why, sizeof(why), "queue %" PRIu32 ": used ring log address 0x%" PRIx64 " is beyond the log",
                 q, ring->log_guest_addr);
        }
    }
    if (!why[0]) {
        return true;
    }
    if (!dev->broken) {
        snprintf(msg, sizeof(msg), "invalid vhost-user state after %.24s: %.192s",
                 req_name(req, name, sizeof(name)), why);
        dev->broken = true;
        dev->panic(dev, msg);
    }
    return false;
}
