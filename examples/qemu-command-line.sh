#!/bin/sh
# A VM whose balloon is vhost-user-balloon. Start the daemon first:
#
#   vhost-user-balloon --vm vm1     # /run/vhost-user-balloon/vm1.sock and vm1.ctl
#
# Guest RAM must be shareable with the daemon (memfd, share=on). reconnect=1
# lets QEMU reattach if the daemon restarts; the balloon size survives (README,
# "Use it with QEMU"). Use the patched QEMU that `bash qemu/build.sh` prints.
QEMU=${QEMU:-$(bash "$(dirname "$0")/../qemu/build.sh)}
exec "$QEMU" \
  -machine q35,memory-backend=mem -m 1G \
  -object memory-backend-memfd,id=mem,size=1G,share=on \
  -accel kvm -cpu host \
  -chardev socket,id=vb,path=/run/vhost-user-balloon/vm1.sock,reconnect=1 \
  -device vhost-user-balloon,chardev=vb \
  -drive file=vm1.qcow2,if=virtio \
  -nographic "$@"
