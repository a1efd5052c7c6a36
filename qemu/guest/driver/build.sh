#!/usr/bin/env bash
# Builds the guest's virtio_balloon.ko with our patches, in order
# (0001: the message virtqueue; 0002: inflate_order), out of tree, for the kernel
# the guest image boots (the same linux-image-amd64 pick as ../build.sh):
#   - drivers/virtio/virtio_balloon.c from Debian's linux-source-6.1 of that
#     exact version (apt-get download; only that one file is kept),
#   - linux-headers-<uname -r> of that version (apt-get install).
# Cached in $VUB_CACHE/guest/driver/<uname -r>_<version>-<hash of the patches
# and this script>; prints the .ko path on stdout, progress on stderr.
#
#   ko=$(bash qemu/guest/driver/build.sh)
#   GUEST_BALLOON_KO=$ko bash qemu/guest/build.sh   # image with the patched driver
VUB_STEP=guest-driver
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../../../native/lib.sh
source "$HERE/../../../native/lib.sh"

PATCHES=("$HERE"/0*.patch)
FILE=drivers/virtio/virtio_balloon.c
DRV_DIR=$VUB_CACHE/guest/driver
mkdir -p "$DRV_DIR"
exec 9>"$DRV_DIR/.lock"
flock 9

guest_kernel   # kpkg, kver, krel
sum=$(cat "${PATCHES[@]}" "$HERE/build.sh" | sha256sum | cut -c1-12)
out=$DRV_DIR/${krel}_${kver//:/_}-$sum
if [ -f "$out/virtio_balloon.ko" ]; then
  echo "$out/virtio_balloon.ko"; exit 0
fi

apt_ensure make patch xz-utils kmod
# Headers of exactly the image's kernel version (Module.symvers CRCs match).
hpkg=linux-headers-$krel
if [ "$(dpkg-query -W -f='${Status} ${Version}' "$hpkg" 2>/dev/null)" != "install ok installed $kver" ]; then
  [ "$(id -u)" = 0 ] || die "$hpkg=$kver is not installed (run as root, or apt-get install $hpkg=$kver)"
  say "installing $hpkg=$kver"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$hpkg=$kver" >"$DRV_DIR/apt.log" 2>&1 \
    || die "apt-get install $hpkg=$kver failed (see $DRV_DIR/apt.log)"
fi
kbuild=/usr/src/linux-headers-$krel
[ -f "$kbuild/Module.symvers" ] || die "$kbuild/Module.symvers missing (is $hpkg installed?)"

# The one source file, from linux-source-6.1 of the same version.
orig=$DRV_DIR/src/${kver//:/_}/virtio_balloon.c
if [ ! -f "$orig" ]; then
  dl=$(mktemp -d "$DRV_DIR/.dl.XXXXXX")
  trap 'rm -rf "$dl"' EXIT
  say "fetching linux-source-6.1=$kver (~140 MB, keeping only $FILE)"
  (cd "$dl" && apt-get download -o APT::Sandbox::User=root "linux-source-6.1=$kver" >"$DRV_DIR/download.log" 2>&1) \
    || die "apt-get download linux-source-6.1=$kver failed (see $DRV_DIR/download.log)"
  # The package holds /usr/src/linux-source-6.1.tar.xz; stream it, keep one file.
  dpkg-deb --fsys-tarfile "$dl"/linux-source-6.1_*.deb | tar -xO ./usr/src/linux-source-6.1.tar.xz \
    | xz -dc -T0 | tar -x -C "$dl" "linux-source-6.1/$FILE" || die "no $FILE in linux-source-6.1=$kver"
  mkdir -p "$(dirname "$orig")"
  mv "$dl/linux-source-6.1/$FILE" "$orig"
  rm -rf "$dl"; trap - EXIT
fi

work=$(mktemp -d "$DRV_DIR/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/drivers/virtio"
cp "$orig" "$work/$FILE"
for p in "${PATCHES[@]}"; do
  patch -d "$work" -p1 --forward --batch <"$p" >>"$work/build.log" 2>&1 \
    || { cat "$work/build.log" >&2; die "$(basename "$p") does not apply to linux-source-6.1=$kver"; }
done
echo 'obj-m := virtio_balloon.o' >"$work/drivers/virtio/Kbuild"
say "building virtio_balloon.ko against $hpkg $kver"
make -C "$kbuild" M="$work/drivers/virtio" modules >>"$work/build.log" 2>&1 \
  || { grep -m10 -A5 'error' "$work/build.log" >&2 || tail -20 "$work/build.log" >&2; die "module build failed"; }
ko=$work/drivers/virtio/virtio_balloon.ko
vm=$(modinfo -F vermagic "$ko")
[ "${vm%% *}" = "$krel" ] || die "built module has vermagic '$vm', want $krel"
grep -q 'warning:' "$work/build.log" && { grep -A3 'warning:' "$work/build.log" >&2; die "the patched driver builds with warnings"; }

mkdir -p "$out.new"
cp "$ko" "$work/build.log" "$out.new/"
printf 'kernel_package=%s\nkernel_version=%s\npatch=%s\npatch_sha256=%s\nvermagic=%s\n' \
  "$kpkg" "$kver" "$(cd "$HERE" && echo 0*.patch)" "$(cat "${PATCHES[@]}" | sha256sum | cut -c1-64)" "$vm" >"$out.new/manifest"
rm -rf "$out"; mv "$out.new" "$out"
say "built $out/virtio_balloon.ko"
echo "$out/virtio_balloon.ko"
