# pugmark %postun: after an upgrade restart the service on the new binary. /var/lib/pugmark
# and the user stay after removal on purpose: the directory is evidence.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart pugmark.service >/dev/null 2>&1 || :
    fi
fi
exit 0
