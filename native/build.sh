#!/usr/bin/env bash
# Builds libvhost-user.so (from Debian's QEMU source package) and our shim
# libvub-shim.so. Cached by (QEMU source version, hash of our C sources).
# Prints the directory holding both libraries on stdout.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VUB_STEP=native
source "$here/lib.sh"

apt_ensure gcc libc6-dev
src=$(qemu_source_tree)
lvu="$src/subprojects/libvhost-user"
[ -f "$lvu/libvhost-user.c" ] || die "no libvhost-user in $src"

ver=$(cat "$src/.extracted" 2>/dev/null || echo custom)
hash=$(cat "$here/vub-shim.c" "$here/vub-shim.h" "$here/vub-discard.c" "$here/vub-discard.h" "$here/vub-seccomp.c" "$here/build.sh" | sha256sum | cut -c1-12)
out="$VUB_CACHE/native/${ver//:/_}-$hash"
if [ -n "${QEMU_SRC:-}" ]; then
  out="$VUB_CACHE/native/custom-$(echo "$QEMU_SRC" | sha256sum | cut -c1-8)-$hash"
  rm -rf "$out"   # an overridden tree may change under us: always rebuild
fi

if [ ! -f "$out/.built" ]; then
  say "building libvhost-user and the shim into $out"
  rm -rf "$out.tmp"; mkdir -p "$out.tmp"
  log="$out.tmp/build.log"
  cflags=(-O2 -g -fPIC -D_GNU_SOURCE -std=gnu99 -Wall)
  gcc "${cflags[@]}" -shared -I"$lvu" -I"$lvu/include" \
      -o "$out.tmp/libvhost-user.so" "$lvu/libvhost-user.c" -lpthread >"$log" 2>&1 \
    || { cat "$log" >&2; die "compiling libvhost-user failed (log: $log)"; }
  gcc "${cflags[@]}" -Werror -shared -I"$lvu" -I"$lvu/include" \
      -o "$out.tmp/libvub-shim.so" "$here/vub-shim.c" "$here/vub-discard.c" "$here/vub-seccomp.c" \
      -L"$out.tmp" -lvhost-user -lpthread -Wl,-rpath,'$ORIGIN' >>"$log" 2>&1 \
    || { cat "$log" >&2; die "compiling native/vub-shim.c and vub-discard.c failed (log: $log)"; }
  # Where libvhost-user's headers are, for our native tests.
  echo "$lvu" >"$out.tmp/libvhost-user-src"
  touch "$out.tmp/.built"
  rm -rf "$out"; mv "$out.tmp" "$out"
fi
# The daemon loads the libraries from native/build (a link, not tracked).
ln -sfn "$out" "$here/build"
echo "$out"
