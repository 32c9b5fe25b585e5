#!/bin/sh
# pugmark-contextualise.sh: the VM part of `pugmark site-config vm` for images contextualised
# without cloud-init (CernVM contextualisation's user-data shell part, Vac/Vcycle with
# Machine/Job Features, a site's own boot script). Run once at boot as root, with
# $MACHINEFEATURES / $JOBFEATURES set when the site provides them. It writes the same files the
# cloud-config writes, finds the instance UUID and restarts rsyslog.
set -eu
mkdir -p /etc/pugmark /usr/local/sbin /etc/rsyslog.d

cat > /usr/local/sbin/pugmark-vm-uuid <<'PUGMARK_EOF'
@UUID_SCRIPT@PUGMARK_EOF
chmod 0755 /usr/local/sbin/pugmark-vm-uuid

cat > /etc/rsyslog.d/90-pugmark.conf <<'PUGMARK_EOF'
@RSYSLOG_CONF@PUGMARK_EOF
@CA_WRITE@@SSH_KEY_WRITE@
/usr/local/sbin/pugmark-vm-uuid
# systemd, else SysV init (older CernVM images).
systemctl restart rsyslog 2>/dev/null || service rsyslog restart
