#!/bin/sh
# After removing lmtpd. The user lmtpd, /etc/lmtpd and the maildirs under
# /var/mail/vhosts stay: they hold the administrator's configuration and
# the users' mail.
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
exit 0
