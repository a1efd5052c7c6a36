/*
 * vub-vhost-check: a firewall in front of libvhost-user 7.2. Anyone who can
 * connect to the vhost-user socket is the frontend, and libvhost-user trusts
 * the frontend: queue indices, region counts, ring placement, config sizes
 * and log addresses index its arrays and our memory unchecked. Every message
 * is checked here before libvhost-user sees it, and libvhost-user's state
 * after it handled the message; a violation breaks the device (the daemon
 * counts a device_error and drops the connection) with a reason naming the
 * message, e.g. "invalid vhost-user message SET_VRING_NUM: queue index 7 >= 6".
 *
 * What the rest of the shim may rely on while the device is not broken:
 * - every region is mapped, lies within its file, and no two regions touch
 *   or overlap in guest-physical space;
 * - every ring with addresses has a power-of-two size <= 32768 and its
 *   descriptor table, avail and used ring (event fields included) lie
 *   aligned inside one region;
 * - with VHOST_F_LOG_ALL and a log, the log covers guest RAM and every used
 *   ring's log address;
 * - kick/call/err/log fds are eventfds, made O_NONBLOCK (the frontend shares
 *   that flag and may clear it again: the shim reads kicks with RWF_NOWAIT
 *   and writes a call fd only when poll() says it has room), the backend
 *   channel is a socket;
 * - no postcopy, no inflight tracking (libvhost-user trusts the indices in
 *   the shared area), no features or protocol features that were not offered.
 *
 * Left to the callers: elements must be pushed with len 0 while LOG_ALL is
 * negotiated (libvhost-user re-reads the descriptors at push time and asserts
 * on addresses a racing frontend wrote there), and a frontend that truncates
 * a region's file after it was checked still makes an access SIGBUS.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VUB_VHOST_CHECK_H
#define VUB_VHOST_CHECK_H

#include <stdbool.h>

#include "libvhost-user.h"

/*
 * Check a message just read (header, payload and fds) against the device.
 * true: hand it to libvhost-user. false: refused; its fds are closed, the
 * device is marked broken and the reason went to dev->panic.
 */
bool vub_vhost_check_msg(VuDev *dev, VhostUserMsg *vmsg);

/*
 * Check libvhost-user's state after vu_dispatch(), with the memory table
 * locked against the discard thread. Mappings that failed are taken out of
 * the table (libvhost-user would unmap address 0 or a stale address at
 * vu_deinit). false: violation; the device is broken and, unless it already
 * was, the reason went to dev->panic.
 */
bool vub_vhost_check_state(VuDev *dev);

#endif
