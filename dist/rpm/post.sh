# pugmark %post: the evidence directory (0750, pugmark), and the unit known to systemd
# (enabled only if the system's preset says so, as EL does for every service).
install -d -o pugmark -g pugmark -m 0750 /var/lib/pugmark
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl --no-reload preset pugmark.service >/dev/null 2>&1 || :
    fi
fi
exit 0
