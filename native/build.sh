#!/usr/bin/env bash
# Builds libvhost-user.so (from Debian's QEMU source package) and our shim
# libvub-shim.so. Cached by (QEMU source version, hash of our C sources).
# Prints the directory holding both libraries on stdout.
#   --sanitize  the same libraries with ASan+UBSan (gcc) in a cache directory
#               of their own; native/build is left alone. Prints the directory.
#   --fuzz      the libFuzzer target native/fuzz/fuzz-vhost.c (clang, ASan+
#               UBSan) over libvhost-user and the shim. Prints the binary.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VUB_STEP=native
source "$here/lib.sh"

mode=${1:-}
case "$mode" in
  ""|--sanitize|--fuzz) ;;
  *) die "usage: build.sh [--sanitize|--fuzz]" ;;
esac

apt_ensure gcc libc6-dev patch
[ "$mode" = --fuzz ] && apt_ensure clang-14 libclang-rt-14-dev llvm-14
src=$(qemu_source_tree)
lvu="$src/subprojects/libvhost-user"
[ -f "$lvu/libvhost-user.c" ] || die "no libvhost-user in $src"

ours=("$here/vub-shim.c" "$here/vub-discard.c" "$here/vub-vhost-check.c" "$here/vub-seccomp.c" "$here/vub-state.c")
shopt -s nullglob
patches=("$here"/patches/*.patch)
shopt -u nullglob
hashed=("${ours[@]}" "$here"/vub-*.h "$here/build.sh" "${patches[@]}")
[ "$mode" = --fuzz ] && hashed+=("$here"/fuzz/*.[ch])
ver=$(cat "$src/.extracted" 2>/dev/null || echo custom)
hash=$(cat "${hashed[@]}" | sha256sum | cut -c1-12)
kind=native
[ "$mode" = --sanitize ] && kind=native-sanitize
[ "$mode" = --fuzz ] && kind=fuzz
out="$VUB_CACHE/$kind/${ver//:/_}-$hash"
if [ -n "${QEMU_SRC:-}" ]; then
  out="$VUB_CACHE/$kind/custom-$(echo "$QEMU_SRC" | sha256sum | cut -c1-8)-$hash"
  rm -rf "$out"   # an overridden tree may change under us: always rebuild
fi

inc=(-I"$lvu" -I"$lvu/include")
run() {  # run WHAT CMD...: a compiler command, its output in the build log
  local what=$1; shift
  "$@" >>"$log" 2>&1 || { cat "$log" >&2; die "compiling $what failed (log: $log)"; }
}

if [ ! -f "$out/.built" ]; then
  say "building ${kind} into $out"
  rm -rf "$out.tmp"; mkdir -p "$out.tmp"
  log="$out.tmp/build.log"
  : >"$log"
  # libvhost-user.c as Debian ships it, with our fixes (native/patches/),
  # in the build directory: the source tree itself is left as fetched.
  cp "$lvu/libvhost-user.c" "$out.tmp/libvhost-user.c"
  for p in "${patches[@]}"; do
    patch --quiet -d "$out.tmp" -p1 <"$p" >>"$log" 2>&1 || { cat "$log" >&2; die "applying $(basename "$p") to libvhost-user.c failed (log: $log)"; }
  done
  lvu_c="$out.tmp/libvhost-user.c"
  case "$mode" in
    --fuzz)
      # Coverage and sanitizers on libvhost-user too: its code is what the
      # frontend drives. Its own warnings are not ours to fix, nor its
      # member accesses through indirect descriptor tables at guest-chosen,
      # misaligned addresses (harmless on x86-64 and arm64; only libvhost-user
      # could check them).
      cc=(clang-14 -g -O1 -fno-omit-frame-pointer -D_GNU_SOURCE -std=gnu99
          -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined "${inc[@]}")
      run libvhost-user "${cc[@]}" -fno-sanitize=alignment -w -c -o "$out.tmp/libvhost-user.o" "$lvu_c"
      run "the fuzz target" "${cc[@]}" -Wall -Werror -o "$out.tmp/fuzz-vhost" "$out.tmp/libvhost-user.o" \
          "${ours[@]}" "$here/fuzz/fuzz-vhost.c" "$here/fuzz/fuzz-seeds.c" -lpthread
      ;;
    *)
      cflags=(-O2 -g -fPIC -D_GNU_SOURCE -std=gnu99 -Wall)
      [ "$mode" = --sanitize ] && cflags=(-O1 -g -fPIC -D_GNU_SOURCE -std=gnu99 -Wall
                                          -fno-omit-frame-pointer -fsanitize=address,undefined)
      run libvhost-user gcc "${cflags[@]}" -shared "${inc[@]}" \
          -o "$out.tmp/libvhost-user.so" "$lvu_c" -lpthread
      run "native/vub-*.c" gcc "${cflags[@]}" -Werror -shared "${inc[@]}" \
          -o "$out.tmp/libvub-shim.so" "${ours[@]}" \
          -L"$out.tmp" -lvhost-user -lpthread -Wl,-rpath,'$ORIGIN'
      # Where libvhost-user's headers are, for our native tests.
      echo "$lvu" >"$out.tmp/libvhost-user-src"
      # A process loading these must start with the ASan runtime (LD_PRELOAD).
      [ "$mode" = --sanitize ] && gcc -print-file-name=libasan.so >"$out.tmp/preload"
      ;;
  esac
  touch "$out.tmp/.built"
  rm -rf "$out"; mv "$out.tmp" "$out"
fi
case "$mode" in
  --fuzz) echo "$out/fuzz-vhost" ;;
  --sanitize) echo "$out" ;;
  *)
    # The daemon loads the libraries from native/build (a link, not tracked).
    ln -sfn "$out" "$here/build"
    echo "$out"
    ;;
esac
