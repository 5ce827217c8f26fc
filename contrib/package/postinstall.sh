#!/bin/sh
# After installing or upgrading lmtpd: the user (sysusers.d), then the
# directories and Postfix's private/ ACL (tmpfiles.d, which needs the user).
# Nothing is enabled or started: that waits for /etc/lmtpd/lmtpd.toml.
set -e
if command -v systemd-sysusers >/dev/null 2>&1; then
	systemd-sysusers lmtpd.conf
elif ! getent passwd lmtpd >/dev/null; then
	useradd --system --user-group --home-dir /var/lib/lmtpd --shell /usr/sbin/nologin --comment "lmtpd delivery agent" lmtpd
fi
if command -v systemd-tmpfiles >/dev/null 2>&1; then
	systemd-tmpfiles --create lmtpd.conf || true
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	# An upgrade restarts a running lmtpd on the new binary.
	systemctl try-restart lmtpd.service || true
fi
if [ ! -e /etc/lmtpd/lmtpd.toml ]; then
	echo "lmtpd: write /etc/lmtpd/lmtpd.toml (see /usr/share/doc/lmtpd/examples/lmtpd.toml and lmtpd.toml(5)), then: systemctl enable --now lmtpd.socket lmtpd.service"
fi
exit 0
