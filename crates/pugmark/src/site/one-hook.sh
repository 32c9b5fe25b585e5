#!/bin/sh
# /var/lib/one/remotes/hooks/pugmark-one-hook: write the VM template OpenNebula passes (base64
# XML, argument 1) into pugmark's spool, one file per event, under a dot name first and renamed
# when complete (pugmark skips dot files). Written by `pugmark site-config opennebula`.
# The spool directory must be writable by oneadmin and by no VM user.
set -eu
d=@SPOOL@/cloud
t=$(date -u +%Y%m%dT%H%M%SZ)
f="one-vm-$t-$$.xml"
printf '%s' "$1" | base64 -d > "$d/.$f"
mv "$d/.$f" "$d/$f"
