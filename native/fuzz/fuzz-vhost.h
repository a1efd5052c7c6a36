/*
 * The fuzz target's input language and setup, shared by the target
 * (fuzz-vhost.c) and its seed corpus (fuzz-seeds.c).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VUB_FUZZ_VHOST_H
#define VUB_FUZZ_VHOST_H

#define RAM_SIZE (64u << 10)
#define LOG_BYTES 4096u
#define QVA 0x7f1200000000ull   /* where "QEMU" mapped guest RAM */
#define NQ 6
#define CONFIG_LEN 16
/* What the daemon offers: balloon bits 0, 1, 2, 5, 23 and the ring features. */
#define DEV_FEATURES (0x80002full | 1ull << 28 | 1ull << 29 | 1ull << 32)

enum { OP_MSG, OP_MEM, OP_FIRE, OP_POP, OP_PUSH, OP_MISC, OP_COUNT };

/* Write the seed corpus (QEMU 7.2-like sessions) into dir; exits on error. */
void fuzz_write_seeds(const char *dir);

#endif
