#!/bin/sh
# A VM whose balloon is vhost-user-balloon. The host daemon must serve it
# first (systemctl start vhost-user-balloon, see examples/systemd/):
#
#   balloonctl add vm1              # prints /run/vhost-user-balloon/vm1.sock
#   # or: /etc/vhost-user-balloon/vms/vm1.json, then systemctl reload vhost-user-balloon
#   # or, a daemon of its own: vhost-user-balloon --vm vm1
#
# QEMU's user must be able to connect: root, or a member of the group
# vhost-user-balloon (usermod -aG vhost-user-balloon <user>; the unit's
# UMask=0007 makes the socket group-writable).
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
