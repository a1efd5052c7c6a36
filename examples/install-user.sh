#!/bin/sh
# Create the system user the daemon runs as, idempotently (docs/privileges.md).
# The libvirt hook's installer and the tests run this; with systemd,
# examples/systemd/vhost-user-balloon.sysusers.conf in /etc/sysusers.d/ does
# the same through systemd-sysusers.
set -eu
user=${1:-vhost-user-balloon}
if getent passwd "$user" >/dev/null 2>&1; then
  echo "user $user exists ($(id "$user"))"
  exit 0
fi
# No home, no login shell, its own group; a concurrent run may win the race.
if ! useradd --system --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin --comment "vhost-user-balloon daemon" "$user"; then
  getent passwd "$user" >/dev/null 2>&1 || { echo "useradd $user failed" >&2; exit 1; }
fi
echo "created system user $user ($(id "$user"))"
