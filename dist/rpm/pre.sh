# pugmark %pre: the `pugmark` system user before its files are laid down (the config is
# root:pugmark). The same user as dist/pugmark.sysusers, made the way EL9 packages do.
getent group pugmark >/dev/null || groupadd -r pugmark
getent passwd pugmark >/dev/null || useradd -r -g pugmark -d /var/lib/pugmark \
    -s /sbin/nologin -c "pugmark evidence collector" pugmark
exit 0
