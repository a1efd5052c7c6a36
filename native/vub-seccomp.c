/*
 * vub-seccomp: a seccomp denylist for the daemon, installed once it has set
 * itself up (sockets bound, pressure source registered, libraries loaded).
 *
 * A strict allowlist is fragile for a Node.js process (V8, libuv's threadpool
 * and io_uring, glibc and koffi pick their system calls by version), so the
 * filter denies what the daemon never needs instead: starting programs,
 * debugging or reading other processes, namespaces and mounts, kernel
 * modules and kexec, BPF and perf, keyrings, userfaultfd, swap, reboot, raw
 * I/O ports, changing identity, clocks and host names, and every system call
 * of another ABI (i386, x32). Denied calls fail with EPERM; clone3 fails with
 * ENOSYS so that glibc falls back to clone(), whose flags a filter can see
 * (namespace flags are denied, threads and fork are not).
 *
 * vub_seccomp_install sets PR_SET_NO_NEW_PRIVS and installs the filter with
 * SECCOMP_FILTER_FLAG_TSYNC, so every thread that exists gets it (V8's
 * workers, libuv's pool) and every later thread inherits it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* CLONE_NEW* in <sched.h> */
#endif
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Exported through libvub-shim.so (declared for koffi in src/host/seccomp.ts). */
int vub_seccomp_install(void);
int vub_seccomp_denied_count(void);
int vub_seccomp_probe(int out[4]);

#if defined(__x86_64__)
#define VUB_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define VUB_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "vub-seccomp: unsupported architecture (add its AUDIT_ARCH_* here)"
#endif

#ifndef __X32_SYSCALL_BIT
#define __X32_SYSCALL_BIT 0x40000000
#endif

/* Namespace flags clone() may not carry (CLONE_NEWTIME needs clone3/unshare). */
#define VUB_CLONE_NEW_MASK (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | \
                            CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET)

static const int denied[] = {
    /* running programs */
    __NR_execve, __NR_execveat,
    /* other processes' memory and fds */
    __NR_ptrace, __NR_process_vm_readv, __NR_process_vm_writev,
#ifdef __NR_pidfd_getfd
    __NR_pidfd_getfd,
#endif
    /* namespaces, mounts, roots */
    __NR_setns, __NR_unshare, __NR_mount, __NR_umount2, __NR_pivot_root, __NR_chroot,
#ifdef __NR_open_tree
    __NR_open_tree, __NR_move_mount, __NR_fsopen, __NR_fsconfig, __NR_fsmount, __NR_fspick,
#endif
#ifdef __NR_mount_setattr
    __NR_mount_setattr,
#endif
    /* the kernel itself */
    __NR_kexec_load,
#ifdef __NR_kexec_file_load
    __NR_kexec_file_load,
#endif
    __NR_init_module, __NR_finit_module, __NR_delete_module, __NR_reboot,
    __NR_bpf, __NR_perf_event_open, __NR_userfaultfd,
    __NR_keyctl, __NR_add_key, __NR_request_key,
    __NR_swapon, __NR_swapoff, __NR_acct, __NR_quotactl,
#ifdef __NR_quotactl_fd
    __NR_quotactl_fd,
#endif
    __NR_open_by_handle_at, __NR_name_to_handle_at, __NR_syslog, __NR_vhangup,
#ifdef __NR_iopl
    __NR_iopl, __NR_ioperm,
#endif
    /* clocks and names of the host */
    __NR_settimeofday, __NR_clock_settime, __NR_clock_adjtime, __NR_adjtimex,
    __NR_sethostname, __NR_setdomainname,
    /* identity: the daemon never changes it */
    __NR_setuid, __NR_setgid, __NR_setreuid, __NR_setregid, __NR_setresuid,
    __NR_setresgid, __NR_setgroups, __NR_setfsuid, __NR_setfsgid, __NR_capset,
};

#define NDENIED ((int)(sizeof(denied) / sizeof(denied[0])))
/* arch (2) + foreign deny (1) + nr load (1) + x32 (1) + list + clone3, clone, load, jset (4) + 3 returns */
#define PROG_MAX (NDENIED + 16)

int vub_seccomp_denied_count(void)
{
    return NDENIED;
}

static size_t build(struct sock_filter *p)
{
    size_t n = 0, i;
    /* Jump targets at the end: ALLOW, DENY (EPERM), NOSYS (ENOSYS). */
    size_t allow, deny, nosys;
    size_t checks = 4 + 1 + (size_t)NDENIED + 4;

    allow = checks;
    deny = allow + 1;
    nosys = deny + 1;
#define JUMP_TO(target) ((uint8_t)((target) - n - 1))
    p[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
    p[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, VUB_AUDIT_ARCH, 1, 0);
    p[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA));
    p[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
    /* x32 system calls share the x86_64 audit arch: deny them by their bit. */
    p[n] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, __X32_SYSCALL_BIT, JUMP_TO(deny), 0);
    n++;
    for (i = 0; i < (size_t)NDENIED; i++) {
        p[n] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)denied[i], JUMP_TO(deny), 0);
        n++;
    }
    p[n] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, JUMP_TO(nosys), 0);
    n++;
    p[n] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, JUMP_TO(allow));
    n++;
    /* clone's flags are its first argument; the namespace bits are in the low word. */
    p[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]));
    p[n] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, VUB_CLONE_NEW_MASK, JUMP_TO(deny), JUMP_TO(allow));
    n++;
#undef JUMP_TO
    p[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    p[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA));
    p[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA));
    return n;
}

/*
 * 0 on success; -errno when prctl or seccomp failed; a positive thread id
 * when TSYNC could not give that thread the filter (nothing was installed).
 */
int vub_seccomp_install(void)
{
    struct sock_filter filter[PROG_MAX];
    struct sock_fprog prog;
    long r;

    memset(filter, 0, sizeof(filter));
    prog.len = (unsigned short)build(filter);
    prog.filter = filter;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        return -errno;
    }
    r = syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog);
    if (r < 0) {
        return -errno;
    }
    return (int)r;
}

/*
 * Test aid (the daemon calls it only with VUB_TEST_SECCOMP_PROBE=1): from a
 * new thread, try calls the filter denies, with arguments that fail or do
 * nothing without it. out[] = errno of execve of a missing file (ENOENT
 * unfiltered), unshare(0) (0 unfiltered), setns(-1, 0) (EBADF unfiltered),
 * clone3(NULL, 0) (EINVAL unfiltered). Returns 0, or -errno if no thread.
 */
static void *probe(void *arg)
{
    int *out = arg;
    char *const argv[] = { (char *)"vub-seccomp-probe", NULL };
    char *const envp[] = { NULL };

    out[0] = syscall(__NR_execve, "/nonexistent/vub-seccomp-probe", argv, envp) < 0 ? errno : 0;
    out[1] = syscall(__NR_unshare, 0) < 0 ? errno : 0;
    out[2] = syscall(__NR_setns, -1, 0) < 0 ? errno : 0;
    out[3] = syscall(__NR_clone3, NULL, 0) < 0 ? errno : 0;
    return NULL;
}

int vub_seccomp_probe(int out[4])
{
    pthread_t t;
    int err = pthread_create(&t, NULL, probe, out);

    if (err) {
        return -err;
    }
    pthread_join(t, NULL);
    return 0;
}
