#!/bin/sh
# /etc/libvirt/hooks/qemu.d/pugmark-quarantine (libvirt >= 6.5; on older libvirt install it as
# /etc/libvirt/hooks/qemu): keep a released domain's disks as evidence (pugmark quarantine).
# libvirt runs it as  NAME DOMAIN OPERATION SUB-OPERATION EXTRA  with the domain XML on stdin
# (https://libvirt.org/hooks.html); only `release` is acted on, every other operation returns
# at once. Written by `pugmark quarantine hook libvirt`. Restart libvirtd after installing it.
if [ "$2" != release ]; then
  cat >/dev/null
  exit 0
fi
exec @PUGMARK@ quarantine --config @CONFIG@ capture --libvirt "$1" "$2" "$3" "$4"
