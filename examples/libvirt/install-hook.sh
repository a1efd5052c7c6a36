#!/bin/sh
# Install (or with --uninstall remove) the libvirt hook that adds domains
# that opt in to the vhost-user-balloon host daemon when they start and
# removes them when they stop. The hook starts no process: the host daemon
# must run (systemctl enable --now vhost-user-balloon, see
# examples/systemd/vhost-user-balloon.service), or domains that opt in do not
# start. libvirtd reads its hook directory when it starts: restart libvirtd
# afterwards.
#
# Also, idempotently: the daemon's system user vhost-user-balloon (kept by
# --uninstall), and QEMU's user (user= in qemu.conf, default libvirt-qemu)
# added to that user's group, so that QEMU can reconnect to the sockets a
# restarted daemon creates anew (srwxrwx--- vhost-user-balloon, UMask=0007 in
# the unit); --uninstall takes it out of the group again.
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
hook_dir=${LIBVIRT_HOOK_DIR:-/etc/libvirt/hooks/qemu.d}
qemu_conf=${LIBVIRT_QEMU_CONF:-/etc/libvirt/qemu.conf}
daemon_user=vhost-user-balloon
hook="$hook_dir/vhost-user-balloon"

# QEMU's user by name (qemu.conf may give "+UID"); empty for root.
qemu_user() {
  u=$(sed -n 's/^[[:space:]]*user[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$qemu_conf" 2>/dev/null | tail -n 1)
  u=${u:-libvirt-qemu}
  name=$(getent passwd "${u#+}" | cut -d: -f1) || name=
  case "$name" in root) name= ;; esac
  echo "$name"
}

if [ "${1:-}" = "--uninstall" ]; then
  rm -f "$hook"
  echo "removed $hook"
  q=$(qemu_user)
  if [ -n "$q" ] && id -nG "$q" 2>/dev/null | tr ' ' '\n' | grep -qx "$daemon_user"; then
    gpasswd -d "$q" "$daemon_user" >/dev/null
    echo "took $q out of the group $daemon_user"
  fi
  exit 0
fi
node=$(command -v node) || { echo "node not found in PATH" >&2; exit 1; }
[ -f "$repo/dist/src/hook/main.js" ] || { echo "$repo/dist/src/hook/main.js missing: run npm run build" >&2; exit 1; }
sh "$repo/examples/install-user.sh" "$daemon_user"
q=$(qemu_user)
if [ -z "$q" ]; then
  echo "QEMU runs as root here (or its user from $qemu_conf is unknown): no group to join"
elif id -nG "$q" | tr ' ' '\n' | grep -qx "$daemon_user"; then
  echo "$q is in the group $daemon_user"
else
  usermod -aG "$daemon_user" "$q"
  echo "added $q to the group $daemon_user (QEMU reconnects to the sockets of a restarted daemon)"
fi
mkdir -p "$hook_dir"
cat >"$hook.tmp" <<HOOK
#!/bin/sh
# vhost-user-balloon: add/remove opted-in domains to/from the host daemon.
exec "$node" "$repo/dist/src/hook/main.js" "\$@"
HOOK
chmod 755 "$hook.tmp"
mv "$hook.tmp" "$hook"
echo "installed $hook (restart libvirtd to activate it)"
[ -S /run/vhost-user-balloon/control.sock ] || \
  echo "the host daemon is not running: systemctl enable --now vhost-user-balloon (examples/systemd/vhost-user-balloon.service)"
