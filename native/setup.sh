#!/usr/bin/env bash
# One idempotent setup for the demo and the tests: Debian packages, npm
# packages, the native libraries, the TypeScript build, and (when present)
# the patched QEMU and the guest image. Everything is cached; a second run
# takes seconds.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
VUB_STEP=setup
source "$here/lib.sh"
cd "$root"

command -v node >/dev/null || die "Node.js 20 or newer is required (apt-get install nodejs, or your usual Node install)"
node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' \
  || die "Node.js $(node --version) is too old: 20 or newer is required"

# npm packages: reinstall when the lockfile changed since the last install.
# Not `npm ci`: npm 11 records only this platform's optional packages (rollup's
# native builds) in the lockfile and `npm ci` then refuses the lockfile as out
# of sync. `npm install --no-save` installs exactly the locked versions and
# never rewrites package.json or the lockfile.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages"
  npm install --no-save --no-audit --no-fund >"$VUB_CACHE/npm.log" 2>&1 \
    || { tail -20 "$VUB_CACHE/npm.log" >&2; die "npm install failed (log: $VUB_CACHE/npm.log)"; }
fi

bash "$here/build.sh" >/dev/null

say "compiling TypeScript"
npx tsc -p tsconfig.json || die "TypeScript build failed"

if [ -f "$root/qemu/build.sh" ]; then
  bash "$root/qemu/build.sh" >/dev/null
fi
if [ -f "$root/qemu/guest/build.sh" ]; then
  bash "$root/qemu/guest/build.sh" >/dev/null
fi
say "ready"
