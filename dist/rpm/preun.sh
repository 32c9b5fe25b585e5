# pugmark %preun: on removal (not upgrade) stop and disable the service; serve flushes and
# closes its ledger on SIGTERM.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now pugmark.service >/dev/null 2>&1 || :
fi
exit 0
