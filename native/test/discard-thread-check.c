/*
 * Deterministic checks of the discard thread (vub-discard.c) that a
 * simulated guest can only hit by chance. Built and run by
 * test/native/discard-thread.test.ts against the project's libraries.
 *
 *   suspend  a chunk the thread took while the shim held map_lock (a queue
 *            stop in dispatch) is not discarded once suspended
 *   legacy   the same without the suspend: the chunk is discarded after the
 *            "reply" (shows that the check can fail)
 *   resume   suspended, then resumed: the whole job is discarded
 *   drop     suspended, then dropped: nothing more is discarded, and the
 *            next job runs
 *   pi       a SCHED_FIFO waiter on map_lock / lock boosts the nice-10
 *            holder (priority inheritance); exit 77 without CAP_SYS_NICE
 *
 * Prints one line of key=value results; exit 0 when the mode's expectation
 * holds, 1 when it does not.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "libvhost-user.h"
#include "vub-discard.h"

#define RAM (8u << 20)

static VuDev vu;
static vub_discarder q;
static unsigned char *ram;

static void setup(void)
{
    int fd = memfd_create("vub-discard-check", MFD_CLOEXEC);

    if (fd < 0 || ftruncate(fd, RAM) < 0) {
        perror("memfd");
        exit(2);
    }
    ram = mmap(NULL, RAM, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (ram == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    memset(ram, 0x5a, RAM);
    memset(&vu, 0, sizeof(vu));
    vu.nregions = 1;
    vu.regions[0].gpa = 0;
    vu.regions[0].size = RAM;
    vu.regions[0].mmap_addr = (uint64_t)(uintptr_t)ram;
    vu.regions[0].mmap_offset = 0;
    vub_discarder_init(&q, &vu);
    if (vub_discarder_start(&q) < 0) {
        fprintf(stderr, "cannot start the thread\n");
        exit(2);
    }
}

/* Pages of [off, off + len) that still hold the pattern. */
static unsigned intact(uint64_t off, uint64_t len)
{
    unsigned n = 0;

    for (uint64_t at = off; at < off + len; at += 4096) {
        n += ram[at] == 0x5a;
    }
    return n;
}

static void wait_busy(void)
{
    for (int i = 0; i < 5000; i++) {
        pthread_mutex_lock(&q.lock);
        int busy = q.busy;
        pthread_mutex_unlock(&q.lock);
        if (busy) {
            return;
        }
        usleep(1000);
    }
    fprintf(stderr, "the thread never took a chunk\n");
    exit(2);
}

static int run_stop(const char *mode)
{
    uint64_t job[2] = { 0, RAM };
    unsigned pages = RAM / 4096, chunk = VUB_DISCARD_CHUNK / 4096;

    setup();
    pthread_mutex_lock(&q.map_lock);      /* the shim, dispatching a message */
    vub_discarder_submit(&q, job, 1);
    wait_busy();                          /* the thread took chunk 0 and waits */
    if (strcmp(mode, "legacy") != 0) {
        vub_discarder_suspend(&q);        /* GET_VRING_BASE's callback */
    }
    pthread_mutex_unlock(&q.map_lock);    /* the reply has gone out */
    usleep(200 * 1000);
    unsigned first = intact(0, VUB_DISCARD_CHUNK), all = intact(0, RAM);

    if (strcmp(mode, "resume") == 0) {
        vub_discarder_resume(&q);
        vub_discarder_wait(&q);
        all = intact(0, RAM);
        printf("mode=resume intact_after_resume=%u of %u\n", all, pages);
        return all == 0 ? 0 : 1;
    }
    if (strcmp(mode, "drop") == 0) {
        int64_t dropped = vub_discarder_drop(&q);
        usleep(100 * 1000);
        unsigned after = intact(0, RAM);
        uint64_t next[2] = { RAM - 4096, 4096 };
        vub_discarder_submit(&q, next, 1);
        vub_discarder_wait(&q);
        printf("mode=drop dropped_bytes=%lld intact=%u of %u next_job_done=%d\n",
               (long long)dropped, after, pages, ram[RAM - 4096] != 0x5a);
        return dropped == RAM && after == pages && ram[RAM - 4096] != 0x5a ? 0 : 1;
    }
    printf("mode=%s chunk_intact=%u of %u all_intact=%u of %u\n", mode, first, chunk, all, pages);
    if (strcmp(mode, "legacy") == 0) {
        return first == 0 ? 0 : 1;        /* discarded after the "reply" */
    }
    return first == chunk && all == pages ? 0 : 1;
}

static pid_t holder_tid;
static pthread_mutex_t *contended;
static volatile int holding;

static void *holder(void *arg)
{
    (void)arg;
    holder_tid = (pid_t)syscall(SYS_gettid);
    setpriority(PRIO_PROCESS, (id_t)holder_tid, VUB_DISCARD_NICE);
    pthread_mutex_lock(contended);
    holding = 1;
    usleep(400 * 1000);
    pthread_mutex_unlock(contended);
    return NULL;
}

/* Field 18 of /proc/self/task/TID/stat: 20 + nice for SCHED_OTHER, negative when real-time. */
static long task_priority(pid_t tid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
    FILE *f = fopen(path, "r");
    if (!f || !fgets(buf, sizeof(buf), f)) {
        return 999;
    }
    fclose(f);
    char *p = strrchr(buf, ')');
    long v = 999;
    for (int field = 3; p && field <= 18; field++) {
        p = strchr(p + 1, ' ');
        if (p && field == 18) {
            v = strtol(p + 1, NULL, 10);
        }
    }
    return v;
}

static void *reader(void *arg)
{
    long *out = arg;
    usleep(150 * 1000);
    *out = task_priority(holder_tid);
    return NULL;
}

static int run_pi(void)
{
    struct sched_param fifo = { .sched_priority = 1 };
    pthread_mutex_t *locks[2] = { &q.map_lock, &q.lock };
    const char *names[2] = { "map_lock", "lock" };
    int ok = 1;

    setup();
    for (int i = 0; i < 2; i++) {
        pthread_t h, r;
        long idle = 0, boosted = 0;

        contended = locks[i];
        holding = 0;
        pthread_create(&h, NULL, holder, NULL);
        while (!holding) {
            usleep(1000);
        }
        idle = task_priority(holder_tid);
        if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &fifo) != 0) {
            printf("pi=skipped reason=no-SCHED_FIFO\n");
            return 77;
        }
        pthread_create(&r, NULL, reader, &boosted);
        pthread_mutex_lock(contended);     /* blocks behind the nice-10 holder */
        pthread_mutex_unlock(contended);
        struct sched_param normal = { .sched_priority = 0 };
        pthread_setschedparam(pthread_self(), SCHED_OTHER, &normal);
        pthread_join(r, NULL);
        pthread_join(h, NULL);
        printf("%s_holder_priority_idle=%ld %s_holder_priority_while_fifo_waits=%ld\n", names[i], idle, names[i], boosted);
        ok &= idle > 0 && boosted < 0;
    }
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s suspend|legacy|resume|drop|pi\n", argv[0]);
        return 2;
    }
    if (strcmp(argv[1], "pi") == 0) {
        return run_pi();
    }
    return run_stop(argv[1]);
}
