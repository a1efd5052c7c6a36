#!/usr/bin/env bash
# Builds qemu-system-x86_64 from Debian's QEMU source package with our
# patches (qemu/patches/*.patch) applied on top of Debian's. Only that one
# binary is built. Cached in $VUB_CACHE/qemu/<source version>-<hash of the
# patches and this script>; a second run prints the path at once.
# Prints the binary's path on stdout; progress goes to stderr.
# QEMU_SRC=<extracted tree> builds from that tree instead (never cached).
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
VUB_STEP=qemu
source "$root/native/lib.sh"

# Build deps, and the firmware the binary finds through --firmwarepath.
apt_ensure gcc libc6-dev make meson ninja-build pkg-config python3 patch \
  libglib2.0-dev libpixman-1-dev libfdt-dev zlib1g-dev seabios qemu-system-data

src=$(qemu_source_tree)
ver=$(cat "$src/.extracted" 2>/dev/null || echo custom)
hash=$(cat "$here"/patches/*.patch "$here/build.sh" | sha256sum | cut -c1-12)
out="$VUB_CACHE/qemu/${ver//:/_}-$hash"
if [ -n "${QEMU_SRC:-}" ]; then
  out="$VUB_CACHE/qemu/custom-$(echo "$QEMU_SRC" | sha256sum | cut -c1-8)-$hash"
  rm -rf "$out"
fi
bin="$out/qemu-system-x86_64"

if [ ! -x "$bin" ]; then
  work="$out.tmp"
  rm -rf "$work"; mkdir -p "$work"
  log="$work/build.log"
  say "building patched QEMU $ver into $out (a few minutes; log: $log)"
  # A private copy: the extracted tree stays pristine for native/build.sh.
  cp -a "$src" "$work/src"
  for p in "$here"/patches/*.patch; do
    patch -d "$work/src" -p1 --forward --batch <"$p" >>"$log" 2>&1 \
      || { tail -20 "$log" >&2; die "patch $(basename "$p") does not apply to QEMU $ver (log: $log)"; }
  done
  mkdir -p "$work/build"
  (cd "$work/build" && "$work/src/configure" \
      --target-list=x86_64-softmmu --without-default-features \
      --enable-kvm --enable-tcg --enable-vhost-user --enable-fdt=system \
      --disable-docs --disable-tools --disable-install-blobs \
      --firmwarepath=/usr/share/seabios:/usr/share/qemu \
      >>"$log" 2>&1) \
    || { tail -30 "$log" >&2; die "QEMU configure failed (log: $log)"; }
  (cd "$work/build" && ninja -j"$(nproc)" qemu-system-x86_64 >>"$log" 2>&1) \
    || { grep -m5 -B2 -A8 'error:' "$log" >&2 || tail -30 "$log" >&2; die "QEMU build failed (log: $log)"; }
  "$work/build/qemu-system-x86_64" -device help 2>/dev/null | grep -q '"vhost-user-balloon-pci"' \
    || die "the built QEMU has no vhost-user-balloon-pci device (log: $log)"
  mkdir -p "$out.new"
  cp "$work/build/qemu-system-x86_64" "$out.new/"
  cp "$log" "$out.new/build.log"
  rm -rf "$out" && mv "$out.new" "$out"
  rm -rf "$work"
  say "built $bin"
fi
echo "$bin"
