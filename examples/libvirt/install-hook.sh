#!/bin/sh
# Install (or with --uninstall remove) the libvirt hook that starts and stops
# vhost-user-balloon daemons for domains that opt in. libvirtd reads its hook
# directory when it starts: restart libvirtd afterwards. The hook runs each
# daemon as the system user vhost-user-balloon, created here if missing
# (--uninstall keeps the user).
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
hook_dir=${LIBVIRT_HOOK_DIR:-/etc/libvirt/hooks/qemu.d}
hook="$hook_dir/vhost-user-balloon"
if [ "${1:-}" = "--uninstall" ]; then
  rm -f "$hook"
  echo "removed $hook"
  exit 0
fi
node=$(command -v node) || { echo "node not found in PATH" >&2; exit 1; }
[ -f "$repo/dist/src/hook/main.js" ] || { echo "$repo/dist/src/hook/main.js missing: run npm run build" >&2; exit 1; }
sh "$repo/examples/install-user.sh" vhost-user-balloon
mkdir -p "$hook_dir"
cat >"$hook.tmp" <<HOOK
#!/bin/sh
# vhost-user-balloon: start/stop the balloon daemon of opted-in domains.
exec "$node" "$repo/dist/src/hook/main.js" "\$@"
HOOK
chmod 755 "$hook.tmp"
mv "$hook.tmp" "$hook"
echo "installed $hook (restart libvirtd to activate it)"
