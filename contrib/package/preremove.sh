#!/bin/sh
# Before removing lmtpd (not on upgrade): stop and disable the units.
set -e
case "$1" in
upgrade|1) exit 0 ;; # deb "upgrade", rpm "1": a newer package follows
esac
if [ -d /run/systemd/system ]; then
	systemctl disable --now lmtpd.service lmtpd.socket >/dev/null 2>&1 || true
fi
exit 0
