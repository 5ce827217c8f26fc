#!/usr/bin/env bash
# Installs the real peers the end-to-end tests talk to (Postfix, swaks,
# python3; PostgreSQL, MariaDB, slapd and ldap-utils for the directory
# tests) when running as root on Debian. Elsewhere it only says what is
# missing: the tests then skip loudly, and fail when CI=true.
set -uo pipefail
need=()
command -v postfix >/dev/null 2>&1 || need+=(postfix)
command -v swaks   >/dev/null 2>&1 || need+=(swaks)
command -v python3 >/dev/null 2>&1 || need+=(python3)
# doveadm reads the maildirsize files lmtpd writes (quota/).
command -v doveadm >/dev/null 2>&1 || need+=(dovecot-core)
[ -x /usr/lib/dovecot/lmtp ] || need+=(dovecot-lmtpd) # protocol/ Client tests talk to Dovecot LMTP
# swaks needs Net::SSLeay for --tls; --no-install-recommends leaves it out.
perl -MNet::SSLeay -e 1 >/dev/null 2>&1 || need+=(libnet-ssleay-perl)
# Directory tests start private PostgreSQL, MariaDB and OpenLDAP servers.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || need+=(postgresql)
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
command -v slapd   >/dev/null 2>&1 || [ -x /usr/sbin/slapd ] || need+=(slapd)
command -v ldapadd >/dev/null 2>&1 || need+=(ldap-utils)
# cmd/lmtpd's completion test parses the zsh script with zsh -n.
command -v zsh     >/dev/null 2>&1 || need+=(zsh)
# The power-cut test (powercut_test.go): mkfs.ext4, e2fsck, chattr.
command -v e2fsck >/dev/null 2>&1 && command -v chattr >/dev/null 2>&1 || need+=(e2fsprogs)
# delivery/maildir's TestOtherFileSystems delivers on XFS and Btrfs; the
# power-cut test also runs on XFS (mkfs.xfs, xfs_repair).
command -v mkfs.xfs >/dev/null 2>&1 || need+=(xfsprogs)
command -v mkfs.btrfs >/dev/null 2>&1 || need+=(btrfs-progs)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	echo "install-deps: missing ${need[*]} (not root or no apt-get): end-to-end tests will skip" >&2
	exit 0
fi
echo "install-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
apt-get update -qq >/dev/null || { echo "install-deps: apt-get update failed" >&2; exit 1; }
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || { echo "install-deps: apt-get install failed" >&2; exit 1; }
# The package may start its own Postfix; the tests run private instances.
command -v postfix >/dev/null 2>&1 && postfix stop >/dev/null 2>&1 || true
# Likewise a slapd the package just started: the tests run their own on a
# loopback port (one that was installed before is left alone).
case " ${need[*]} " in *" slapd "*) [ -x /etc/init.d/slapd ] && /etc/init.d/slapd stop >/dev/null 2>&1 || true ;; esac
exit 0
