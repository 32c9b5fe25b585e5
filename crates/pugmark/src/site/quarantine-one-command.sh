#!/bin/sh
# /var/lib/one/remotes/hooks/pugmark-quarantine: run by the pugmark-quarantine state hook with
# the VM's template (base64 XML) on stdin. Written by `pugmark quarantine hook opennebula-command`.
exec @PUGMARK@ quarantine --config @CONFIG@ capture --opennebula
