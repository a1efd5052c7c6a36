# Shared helpers for the build scripts (sourced, not run).
# Everything built from third-party source lands in $VUB_CACHE, outside the
# work tree, keyed by source version and patch hash.
set -euo pipefail

VUB_CACHE=${VUB_CACHE:-/var/cache/vhost-user-balloon}
mkdir -p "$VUB_CACHE"

say() { printf '[%s] %s\n' "${VUB_STEP:-setup}" "$*" >&2; }
die() { printf '[%s] error: %s\n' "${VUB_STEP:-setup}" "$*" >&2; exit 1; }

# Install Debian packages that are missing; `apt-get update` only when needed.
apt_ensure() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "missing Debian packages: ${missing[*]} (run as root, or install them with apt-get)"
  say "installing Debian packages: ${missing[*]}"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >"$VUB_CACHE/apt.log" 2>&1; then
    apt-get update >>"$VUB_CACHE/apt.log" 2>&1 || die "apt-get update failed (see $VUB_CACHE/apt.log)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >>"$VUB_CACHE/apt.log" 2>&1 \
      || die "apt-get install ${missing[*]} failed (see $VUB_CACHE/apt.log)"
  fi
}

# deb-src entries derived from the system's own apt sources: the same
# archives, `Types: deb-src`. No host name is written by this project.
ensure_deb_src() {
  local list=/etc/apt/sources.list.d/vhost-user-balloon-src.sources
  [ -f "$list" ] && return 0
  local found=0 f
  {
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] || continue
      [ "$f" = "$list" ] && continue
      sed -e 's/^Types:.*/Types: deb-src/' "$f"; echo; found=1
    done
    if [ -f /etc/apt/sources.list ]; then
      grep -E '^deb ' /etc/apt/sources.list | sed -e 's/^deb /deb-src /' >"$VUB_CACHE/src.list" || true
    fi
  } >"$list.tmp"
  if [ -s "$VUB_CACHE/src.list" ]; then
    cp "$VUB_CACHE/src.list" /etc/apt/sources.list.d/vhost-user-balloon-src.list; found=1
  fi
  [ "$found" = 1 ] || { rm -f "$list.tmp"; die "no apt sources found in /etc/apt to derive deb-src entries from"; }
  mv "$list.tmp" "$list"
  say "added deb-src entries derived from the system's apt sources ($list)"
  apt-get update >"$VUB_CACHE/apt.log" 2>&1 || die "apt-get update failed after adding deb-src (see $VUB_CACHE/apt.log)"
}

# Extracted Debian QEMU source tree (Debian patches applied); prints its path.
# QEMU_SRC=<tree> overrides the fetch.
qemu_source_tree() {
  if [ -n "${QEMU_SRC:-}" ]; then
    [ -f "$QEMU_SRC/subprojects/libvhost-user/libvhost-user.c" ] \
      || die "QEMU_SRC=$QEMU_SRC is not a QEMU source tree (no subprojects/libvhost-user/libvhost-user.c)"
    echo "$QEMU_SRC"; return 0
  fi
  apt_ensure dpkg-dev
  ensure_deb_src
  local ver
  local v
  ver=
  for v in $(apt-cache showsrc --only-source qemu 2>/dev/null | awk '/^Version:/{print $2}'); do
    if [ -z "$ver" ] || dpkg --compare-versions "$v" gt "$ver"; then ver=$v; fi
  done
  [ -n "$ver" ] || die "apt-cache showsrc qemu found no source package (deb-src entries missing or apt-get update failed)"
  local dir="$VUB_CACHE/src/qemu-${ver//:/_}"
  if [ ! -f "$dir/.extracted" ]; then
    say "fetching QEMU source package $ver"
    rm -rf "$dir" "$dir.dl"; mkdir -p "$dir.dl"
    (cd "$dir.dl" && apt-get source --download-only "qemu=$ver" >"$VUB_CACHE/qemu-src.log" 2>&1) \
      || die "apt-get source qemu=$ver failed (see $VUB_CACHE/qemu-src.log)"
    (cd "$dir.dl" && dpkg-source -x *.dsc tree >>"$VUB_CACHE/qemu-src.log" 2>&1) \
      || die "dpkg-source -x failed (see $VUB_CACHE/qemu-src.log)"
    mv "$dir.dl/tree" "$dir"; rm -rf "$dir.dl"
    echo "$ver" >"$dir/.extracted"
  fi
  echo "$dir"
}

# The guest kernel the images boot: Debian's linux-image-amd64 metapackage pins
# the ABI package and its version, e.g. "Depends: linux-image-6.1.0-56-amd64
# (= 6.1.192-2)". Sets kpkg (package), kver (its version), krel (uname -r).
# One apt-cache call (~1 s; apt keeps no binary cache), `apt-get update` if needed.
guest_kernel() {
  local dep
  _kernel_dep() {
    apt-cache show --no-all-versions linux-image-amd64 2>/dev/null \
      | sed -n 's/^Depends:.*\(linux-image-6\.1\.0-[0-9][0-9]*-amd64\) (= \([^)]*\)).*/\1 \2/p' | head -n 1
  }
  dep=$(_kernel_dep)
  if [ -z "$dep" ]; then
    apt-get update >"$VUB_CACHE/apt.log" 2>&1 || die "apt-get update failed (see $VUB_CACHE/apt.log)"
    dep=$(_kernel_dep)
  fi
  [ -n "$dep" ] || die "linux-image-amd64 does not depend on a linux-image-6.1.0-<abi>-amd64 package (not Debian 12?)"
  kpkg=${dep% *} kver=${dep#* }
  krel=${kpkg#linux-image-}
}
