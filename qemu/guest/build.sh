#!/usr/bin/env bash
# Guest image for the end-to-end tests and the demo: Debian's 6.1 kernel and a
# busybox initramfs that loads the virtio balloon driver and runs our init.
#
#   bash qemu/guest/build.sh            -> prints $VUB_CACHE/guest/<key>, holding
#                                          vmlinux (ELF, PVH boot), vmlinuz, initrd.gz
#   GUEST_BALLOON_KO=/path/virtio_balloon.ko bash qemu/guest/build.sh
#                                       -> same, with that module instead of the stock one
#
# The key covers the kernel package version, the busybox-static version, the
# sha256 of our files that shape the image (init, this script, the bizzy
# workload's source) and of
# GUEST_BALLOON_KO, so any change gives a new directory and old ones stay valid.
# Only the directory path goes to stdout; progress goes to stderr.
VUB_STEP=guest
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../../native/lib.sh
source "$HERE/../../native/lib.sh"

# Modules to load, in this order; their dependencies are resolved below from
# the .ko files themselves (the package ships no modules.dep). virtio_blk is
# for an optional swap disk (vub.swap=1), as the source design's guests swapped.
WANT_MODULES=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_balloon virtio_blk)

GUEST_DIR=$VUB_CACHE/guest
mkdir -p "$GUEST_DIR"

# Builds of the same image from several test processes must not interleave.
exec 9>"$GUEST_DIR/.lock"
flock 9

if [ -n "${GUEST_BALLOON_KO:-}" ]; then
  [ -f "$GUEST_BALLOON_KO" ] || die "GUEST_BALLOON_KO=$GUEST_BALLOON_KO: no such file"
  case "$GUEST_BALLOON_KO" in
    *.ko|*.ko.xz) ;;
    *) die "GUEST_BALLOON_KO=$GUEST_BALLOON_KO: expected a .ko or .ko.xz file" ;;
  esac
fi

apt_ensure busybox-static cpio gzip xz-utils kmod gcc libc6-dev binutils
BIZZY_SRC=$HERE/../../native/workload/bizzy.c

# --- kernel package -----------------------------------------------------------
guest_kernel   # sets kpkg, kver, krel (native/lib.sh)
kroot=$GUEST_DIR/linux/${kpkg}_${kver//:/_}

if [ ! -f "$kroot/.extracted" ]; then
  say "fetching $kpkg $kver"
  rm -rf "$kroot" "$kroot.dl"; mkdir -p "$kroot.dl"
  # _apt cannot write into root-owned directories; the download is a plain
  # file fetch, so run it unsandboxed instead of warning about it.
  (cd "$kroot.dl" && apt-get download -o APT::Sandbox::User=root "$kpkg=$kver" >"$GUEST_DIR/download.log" 2>&1) \
    || die "apt-get download $kpkg=$kver failed (see $GUEST_DIR/download.log)"
  deb=$(ls "$kroot.dl"/*.deb)
  dpkg-deb -x "$deb" "$kroot.dl/tree" || die "dpkg-deb -x $deb failed"
  mv "$kroot.dl/tree" "$kroot"; rm -rf "$kroot.dl"
  echo "$kver" >"$kroot/.extracted"
fi
vmlinuz=$kroot/boot/vmlinuz-$krel
moddir=$kroot/lib/modules/$krel
[ -f "$vmlinuz" ] || die "$vmlinuz missing from $kpkg"
[ -d "$moddir" ] || die "$moddir missing from $kpkg"

# The uncompressed ELF kernel boots through QEMU's PVH entry (CONFIG_PVH):
# that skips the in-guest xz decompression, ~5 s of the ~9 s TCG boot.
vmlinux=$kroot/boot/vmlinux-$krel
if [ ! -f "$vmlinux" ] && [ ! -f "$vmlinux.none" ]; then
  for off in $(LC_ALL=C grep -obUa '7zXZ' "$vmlinuz" | head -n 4 | cut -d: -f1); do
    # The xz magic is FD '7zXZ' 00: the stream starts one byte before the match.
    # xz stops after the stream, so tail dies of SIGPIPE: no pipefail here.
    if (set +o pipefail; tail -c +"$off" "$vmlinuz" | xz -dc --single-stream >"$vmlinux.tmp" 2>/dev/null) \
       && [ "$(head -c 4 "$vmlinux.tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
      mv "$vmlinux.tmp" "$vmlinux"; break
    fi
  done
  rm -f "$vmlinux.tmp"
  [ -f "$vmlinux" ] || { touch "$vmlinux.none"; say "no xz-compressed ELF kernel inside $vmlinuz: images carry vmlinuz only"; }
fi

# --- cache key ----------------------------------------------------------------
bbver=$(dpkg-query -W -f='${Version}' busybox-static)
ko_sum=stock
[ -n "${GUEST_BALLOON_KO:-}" ] && ko_sum=$(sha256sum <"$GUEST_BALLOON_KO" | cut -c1-64)
sum=$( { printf 'kernel %s %s\nbusybox %s\nballoon %s\n' "$kpkg" "$kver" "$bbver" "$ko_sum"
         sha256sum "$HERE/init" "$HERE/build.sh" "$BIZZY_SRC" | awk '{ print $1 }'; } | sha256sum | cut -c1-12)
key=${krel}_${kver//:/_}-$sum
out=$GUEST_DIR/$key
if [ -f "$out/initrd.gz" ] && [ -f "$out/vmlinuz" ]; then
  echo "$out"; exit 0
fi

# --- module set ---------------------------------------------------------------
declare -A ko_path=()
ko_path_of() {  # name -> .ko / .ko.xz in the kernel tree (or GUEST_BALLOON_KO)
  local name=$1
  if [ "$name" = virtio_balloon ] && [ -n "${GUEST_BALLOON_KO:-}" ]; then echo "$GUEST_BALLOON_KO"; return; fi
  local alt=${name//_/-} f
  f=$(find "$moddir/kernel" \( -name "$name.ko" -o -name "$name.ko.xz" -o -name "$alt.ko" -o -name "$alt.ko.xz" \) -print -quit)
  [ -n "$f" ] || die "module $name not found under $moddir"
  echo "$f"
}
order=()
declare -A seen=()
visit() {  # depth-first: dependencies before the module that needs them
  local name=$1 dep deps
  [ -n "${seen[$name]:-}" ] && return 0
  seen[$name]=1
  ko_path[$name]=$(ko_path_of "$name")
  deps=$(modinfo -F depends "${ko_path[$name]}") || die "modinfo ${ko_path[$name]} failed"
  for dep in ${deps//,/ }; do visit "$dep"; done
  order+=("$name")
}
for m in "${WANT_MODULES[@]}"; do visit "$m"; done

if [ -n "${GUEST_BALLOON_KO:-}" ]; then
  vm=$(modinfo -F vermagic "$GUEST_BALLOON_KO")
  [ "${vm%% *}" = "$krel" ] || die "GUEST_BALLOON_KO vermagic '$vm' does not match kernel $krel (build it against linux-headers-$krel)"
fi

# --- initramfs ----------------------------------------------------------------
say "building initramfs for $krel (modules: ${order[*]})"
stage=$(mktemp -d "$GUEST_DIR/.stage.XXXXXX")
tmp=$(mktemp -d "$GUEST_DIR/.out.XXXXXX")
trap 'rm -rf "$stage" "$tmp"' EXIT
mkdir -p "$stage"/{bin,sbin,dev,proc,sys,run,tmp,lib/modules}
cp /bin/busybox "$stage/bin/busybox"
# The kernel's built-in initramfs already has /dev/console; ours adds it too
# in case a kernel without one is used, which needs root.
if [ "$(id -u)" = 0 ]; then mknod -m 600 "$stage/dev/console" c 5 1; fi
for m in "${order[@]}"; do
  src=${ko_path[$m]}
  case "$src" in
    *.xz) xz -dc "$src" >"$stage/lib/modules/$m.ko" ;;  # busybox insmod takes plain .ko
    *) cp "$src" "$stage/lib/modules/$m.ko" ;;
  esac
  echo "$m" >>"$stage/lib/modules/load.order"
done
echo "$krel" >"$stage/lib/modules/kernel.release"
install -m 755 "$HERE/init" "$stage/init"
# The ebizzy-like workload (native/workload/bizzy.c), static: the initramfs has no libc.
gcc -static -O2 -Wall -Wextra -pthread -o "$stage/bin/bizzy" "$BIZZY_SRC" 2>"$GUEST_DIR/bizzy-build.log" \
  || die "building bizzy failed (see $GUEST_DIR/bizzy-build.log)"
strip "$stage/bin/bizzy"

(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -9n >"$tmp/initrd.gz" \
  || die "cpio/gzip failed"
cp "$vmlinuz" "$tmp/vmlinuz"
[ -f "$vmlinux" ] && { ln "$vmlinux" "$tmp/vmlinux" 2>/dev/null || cp "$vmlinux" "$tmp/vmlinux"; }
printf '%s\n' "$krel" >"$tmp/kernel.release"
printf 'kernel_package=%s\nkernel_version=%s\nbusybox=%s\nballoon_ko=%s\nmodules=%s\n' \
  "$kpkg" "$kver" "$bbver" "${GUEST_BALLOON_KO:-stock}" "${order[*]}" >"$tmp/manifest"
chmod 755 "$tmp"; rm -rf "$out"; mv "$tmp" "$out"
say "guest image ready: $out ($(du -h "$out/initrd.gz" | cut -f1) initrd)"
echo "$out"
