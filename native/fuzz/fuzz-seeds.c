/*
 * Seed corpus of the vhost-user fuzz target: sessions the way QEMU 7.2
 * drives a vhost-user-balloon device (realize, start with either memory
 * table message, queues used, stop), a dirty-logging one, the rarer
 * requests, and one of each request for the fuzzer to vary.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libvhost-user.h"
#include "fuzz-vhost.h"

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

void fuzz_write_seeds(const char *dir)
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

    /*
     * 5: regions touching in guest-physical space and an indirect table of
     * 1024 entries across the seam: libvhost-user 7.2 copies it past its
     * stack buffer. The firewall refuses the table.
     */
    p.n = 0;
    realize(&p, proto);
    msg_u64(&p, VHOST_USER_SET_FEATURES, features);
    region(table + 8, 0, RAM_SIZE / 2, 0);
    region(table + 40, RAM_SIZE / 2, RAM_SIZE / 2, RAM_SIZE / 2);
    msg(&p, VHOST_USER_SET_MEM_TABLE, 1, table, sizeof(table));
    {
        struct vring_desc seam = { RAM_SIZE / 2 - 8, 0x4000, VRING_DESC_F_INDIRECT, 0 };
        uint16_t avail[3] = { 0, 1, 0 };
        mem(&p, 0x9000, &seam, sizeof(seam));
        mem(&p, 0x9100, avail, sizeof(avail));
    }
    vring(&p, 0, QVA + 0x9000, 0x9000, 0);
    write_seed(dir, "adjacent-regions", &p);

    /* 6-8: states only the post-dispatch check catches. A region removed under a running ring: */
    p.n = 0;
    realize(&p, proto | slots);
    msg_u64(&p, VHOST_USER_SET_FEATURES, features);
    region(memreg + 8, 0, RAM_SIZE, 0);
    msg(&p, VHOST_USER_ADD_MEM_REG, 1, memreg, sizeof(memreg));
    ring(&p, 0x8000, 0x2000, 0);
    vring(&p, 0, QVA + 0x8000, 0x8000, 0);
    msg(&p, VHOST_USER_REM_MEM_REG, 1, memreg, sizeof(memreg));
    fire_op(&p, 0);
    write_seed(dir, "state-region-gone", &p);
    /* guest RAM beyond the dirty log (4 KiB of log covers 128 MiB): */
    p.n = 0;
    realize(&p, proto | slots);
    region(memreg + 8, 0x10000000, RAM_SIZE, 0);
    msg(&p, VHOST_USER_ADD_MEM_REG, 1, memreg, sizeof(memreg));
    msg(&p, VHOST_USER_SET_LOG_BASE, 1, log, sizeof(log));
    msg_u64(&p, VHOST_USER_SET_FEATURES, features | 1ull << VHOST_F_LOG_ALL);
    write_seed(dir, "state-log-short", &p);
    /* a used ring logged beyond the log: */
    p.n = 0;
    realize(&p, proto | slots);
    region(memreg + 8, 0, RAM_SIZE, 0);
    msg(&p, VHOST_USER_ADD_MEM_REG, 1, memreg, sizeof(memreg));
    msg(&p, VHOST_USER_SET_LOG_BASE, 1, log, sizeof(log));
    msg_u64(&p, VHOST_USER_SET_FEATURES, features | 1ull << VHOST_F_LOG_ALL);
    ring(&p, 0x8000, 0x2000, 0);
    vring(&p, 0, QVA + 0x8000, 0xfffffffffffff000ull, 1 << VHOST_VRING_F_LOG);
    pop_op(&p, 0, 0, 2);
    write_seed(dir, "state-log-ring", &p);

    /* 9-: one of each other request after realize, for the fuzzer to vary. */
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

