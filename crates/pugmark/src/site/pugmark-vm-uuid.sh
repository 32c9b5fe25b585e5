#!/bin/sh
# /usr/local/sbin/pugmark-vm-uuid: find this VM's instance UUID and write it to
# /etc/pugmark/vm-uuid, where rsyslog's pugmark template reads it (90-pugmark.conf).
# Written by `pugmark site-config vm`. Run at boot before rsyslog starts (cloud-init runcmd,
# CernVM/MJF contextualisation), then restart rsyslog.
#
# Sources, the first that answers wins:
#   1. cloud-init's instance data, v1.instance_id (the Nova UUID on OpenStack, the VM id on
#      OpenNebula); PUGMARK_INSTANCE_DATA names another instance-data.json.
#   2. the metadata service: OpenStack's meta_data.json "uuid", else EC2's instance-id.
#   3. Machine/Job Features: $MACHINEFEATURES/vm_uuid (a key the site adds), else
#      $JOBFEATURES/job_id (Vac and Vcycle name the VM there); each a directory or a URL.
# What reaches the rsyslog template is cut to the characters a UUID or an instance id uses, so
# nothing written into the instance data can break out of the structured-data value.
set -u
out="${PUGMARK_VM_UUID_FILE:-/etc/pugmark/vm-uuid}"
uuid=""

if command -v cloud-init >/dev/null 2>&1; then
  if [ -n "${PUGMARK_INSTANCE_DATA:-}" ]; then
    uuid=$(cloud-init query -i "$PUGMARK_INSTANCE_DATA" -u /dev/null -v /dev/null v1.instance_id 2>/dev/null) || uuid=""
  else
    uuid=$(cloud-init query v1.instance_id 2>/dev/null) || uuid=""
  fi
fi

if [ -z "$uuid" ] && command -v curl >/dev/null 2>&1; then
  uuid=$(curl -fsS --max-time 5 http://169.254.169.254/openstack/latest/meta_data.json 2>/dev/null \
    | tr ',' '\n' | sed -n 's/.*"uuid": *"\([0-9A-Za-z-]*\)".*/\1/p' | head -n 1) || uuid=""
  if [ -z "$uuid" ]; then
    uuid=$(curl -fsS --max-time 5 http://169.254.169.254/latest/meta-data/instance-id 2>/dev/null) || uuid=""
  fi
fi

# A Machine/Job Features value: $1 is the directory or URL, $2 the key.
mjf() {
  case "$1" in
    http://* | https://*) curl -fsS --max-time 5 "$1/$2" 2>/dev/null ;;
    *) [ -r "$1/$2" ] && cat "$1/$2" ;;
  esac
}
if [ -z "$uuid" ] && [ -n "${MACHINEFEATURES:-}" ]; then
  uuid=$(mjf "$MACHINEFEATURES" vm_uuid) || uuid=""
fi
if [ -z "$uuid" ] && [ -n "${JOBFEATURES:-}" ]; then
  uuid=$(mjf "$JOBFEATURES" job_id) || uuid=""
fi

uuid=$(printf '%s' "$uuid" | tr -cd 'A-Za-z0-9._:-' | cut -c 1-128)
[ -n "$uuid" ] || uuid="unknown"
mkdir -p "$(dirname "$out")"
printf '%s' "$uuid" > "$out.tmp" && mv "$out.tmp" "$out"
