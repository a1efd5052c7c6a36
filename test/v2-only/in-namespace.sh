#!/usr/bin/env bash
# Run a command where the cgroup mounts look like a cgroup v2-only host's
# (Debian 12 with systemd: cgroup2 at /sys/fs/cgroup, no v1 hierarchy), on a
# hybrid host, without touching the host's mounts: a private mount namespace
# (unshare -m, propagation private), the /sys/fs/cgroup tree detached there,
# cgroup2 mounted in its place. Root only.
#
#   bash test/v2-only/in-namespace.sh npx vitest run --config test/vitest.config.ts test/integration/pressure-psi.test.ts
#
# What this cannot show: the memory controller stays bound to the host's v1
# hierarchy (a controller lives in one hierarchy at a time, and the v1 one is
# still mounted outside the namespace), so this cgroup2 root offers no
# memory controller and memory.max does not exist here. Groups made under
# /sys/fs/cgroup in the namespace are groups of the host's cgroup2
# hierarchy (/sys/fs/cgroup/unified outside).
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "in-namespace.sh: needs root (mount namespace, mounts)" >&2; exit 77; }
[ $# -gt 0 ] || { echo "usage: in-namespace.sh COMMAND [ARG...]" >&2; exit 2; }
exec unshare --mount --propagation private -- bash -c '
  set -euo pipefail
  # Detach the whole tree (the tmpfs and every v1 and cgroup2 mount under it), here only.
  if mountpoint -q /sys/fs/cgroup; then umount -R -l /sys/fs/cgroup; fi
  mount -t cgroup2 cgroup2 /sys/fs/cgroup
  exec "$@"
' in-namespace "$@"
