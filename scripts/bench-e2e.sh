#!/usr/bin/env bash
# End-to-end benchmark (issue 7): lmtpd side by side with a go-smtp server,
# Dovecot LMTP and Postfix's smtp-sink over loopback TCP, driven by
# bench/loadgen; and lmtpd as a proxy in front of a second lmtpd (issue
# 16), beside direct delivery to the same backend. Every server is
# started fresh for every run, on a fresh maildir tree; the trees are
# deleted only at the very end (ext4 creates files slowly for minutes
# after many deletions). Runs are interleaved (scenario, run, server) so
# that drift hits every server alike.
#
#   scripts/bench-e2e.sh                 # tables to stdout
#   scripts/bench-e2e.sh -readme README.md   # rewrite its bench-e2e section
#
# Environment: RUNS (default 3), DURATION per throughput run (default 4s),
# SCENARIOS (default all: 1k-c1 1k-c8 1k-c64 1k-c8-r5 100k-c8 200m idle-10k),
# RESULTS (JSON lines, default $TMPDIR/lmtpd-bench-e2e.jsonl, replaced),
# KEEP=1 keeps the run directory, PROFILE=1 also records CPU profiles of
# lmtpd (perf) and lmtpsink (pprof) on 1k-c8 and 100k-c8 after the runs.
# FS=loop (the default as root) puts the maildir trees on a fresh ext4 file
# system with a journal, on a loop device (FS_SIZE, default 16G, sparse):
# what a mail server runs on, and isolated from file deletions elsewhere on
# the machine, which slow ext4's inode allocation for minutes. FS=tmp puts
# them in $TMPDIR as it is.
# As root on Debian, missing Postfix/Dovecot packages are installed and the
# vmail user (uid 5000) Dovecot's recipe needs is created. A server whose
# program is missing is skipped with a warning.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

runs=${RUNS:-3}
duration=${DURATION:-4s}
scenarios=${SCENARIOS:-"1k-c1 1k-c8 1k-c64 1k-c8-r5 100k-c8 200m idle-10k"}
results=${RESULTS:-${TMPDIR:-/tmp}/lmtpd-bench-e2e.jsonl}
report_args=("$@")

say() { echo "bench-e2e: $*" >&2; }

# --- peers ---------------------------------------------------------------
install_peers() {
	local need=()
	command -v smtp-sink >/dev/null 2>&1 || need+=(postfix)
	command -v dovecot >/dev/null 2>&1 || need+=(dovecot-core)
	[ -x /usr/lib/dovecot/lmtp ] || need+=(dovecot-lmtpd)
	[ ${#need[@]} -eq 0 ] && return 0
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
		say "missing ${need[*]} (not root or no apt-get): those servers are skipped"
		return 0
	fi
	say "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
	apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
		say "apt-get install failed: those servers are skipped"
	# The packages may have started their system instances; the benchmark
	# runs private ones.
	if [[ " ${need[*]} " == *" dovecot-core "* ]]; then
		systemctl stop dovecot >/dev/null 2>&1 || dovecot stop >/dev/null 2>&1 || true
	fi
	if [[ " ${need[*]} " == *" postfix "* ]]; then postfix stop >/dev/null 2>&1 || true; fi
}

have_dovecot=0
have_sink=0
install_peers
if command -v dovecot >/dev/null 2>&1 && [ -x /usr/lib/dovecot/lmtp ] && [ "$(id -u)" = 0 ]; then
	if ! id vmail >/dev/null 2>&1; then
		getent group vmail >/dev/null || groupadd -g 5000 vmail
		useradd -u 5000 -g vmail -M -s /usr/sbin/nologin vmail
	fi
	have_dovecot=1
else
	say "Dovecot LMTP not available (needs root, dovecot-core and dovecot-lmtpd): skipped"
fi
command -v smtp-sink >/dev/null 2>&1 && have_sink=1 || say "smtp-sink (package postfix) not found: skipped"

# 10,000 idle connections need file descriptors on both sides.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# (Go programs raise their own soft limit to the hard one; smtp-sink does not.)
if [ "$(ulimit -n)" -lt 10100 ]; then
	say "open file limit $(ulimit -n) < 10100: idle-10k skipped"
	scenarios=${scenarios//idle-10k/}
fi

# --- build ---------------------------------------------------------------
server_pid=
backend_pid=
work=$(mktemp -d "${TMPDIR:-/tmp}/lmtpd-bench.XXXXXX")
chmod 755 "$work" # Dovecot's workers run as vmail
mounted=
cleanup() {
	local pid
	for pid in ${server_pid:-} ${backend_pid:-}; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [ "${KEEP:-0}" = 1 ]; then say "kept $work"; return; fi
	# The trees go only now, all at once (with FS=loop: one file).
	if [ -n "$mounted" ]; then umount "$mounted" || say "cannot unmount $mounted"; fi
	rm -rf "$work"
}
trap cleanup EXIT

fs=${FS:-}
if [ -z "$fs" ]; then
	fs=tmp
	[ "$(id -u)" = 0 ] && command -v mkfs.ext4 >/dev/null 2>&1 && command -v losetup >/dev/null 2>&1 && fs=loop
fi
trees="$work/runs"
case $fs in
loop)
	# Inode tables and journal initialised now, not by a kernel thread
	# in the background during the runs.
	truncate -s "${FS_SIZE:-16G}" "$work/maildir.img"
	mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$work/maildir.img"
	mkdir -p "$work/fs"
	mount -o loop "$work/maildir.img" "$work/fs"
	mounted="$work/fs"
	chmod 755 "$work/fs"
	trees="$work/fs/runs"
	fs_desc="maildir trees on a fresh ext4 file system (journal, default options) on a loop device backed by $(findmnt -no FSTYPE,SOURCE -T "$work" | tr -s ' ' ' ')"
	;;
tmp) fs_desc="maildir trees in \$TMPDIR: $(findmnt -no FSTYPE,SOURCE,OPTIONS -T "$work" | tr -s ' ' ' ')" ;;
*) say "FS=$fs: want loop or tmp"; exit 2 ;;
esac
say "$fs_desc"
say "building into $work/bin"
go build -trimpath -o "$work/bin/lmtpd" ./cmd/lmtpd
go build -trimpath -o "$work/bin/" ./bench/loadgen ./bench/gosmtpd ./bench/lmtpsink ./bench/report
: >"$results"

# --- servers ---------------------------------------------------------------
# start_NAME DIR PORT starts a server listening on 127.0.0.1:PORT with its
# files under DIR and sets server_pid.

# Listening ports are taken below the kernel's ephemeral range, which the
# 10,000 client sockets of idle-10k fill (and leave in TIME_WAIT).
read -r eph_lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || eph_lo=32768
port_lo=$((eph_lo > 12000 ? 10000 : 1025))
port_span=$((eph_lo > 12000 ? eph_lo - 10000 : eph_lo - 1025))
free_port() {
	local p
	while :; do
		p=$((port_lo + RANDOM % port_span))
		ss -Htln "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return; }
	done
}

lmtpd_config() { # DIR PORT DELIVERED_TO [FLUSH]
	local flushline=
	[ -z "${4:-}" ] || flushline="flush = \"$4\""
	cat >"$1/lmtpd.toml" <<-EOF
		[log]
		format = "json"
		[server]
		hostname = "lmtpd.example.test"
		shutdown_grace = "1s"
		[[listener]]
		name = "lmtp"
		protocol = "lmtp"
		address = "127.0.0.1:$2"
		max_message_size = 0
		max_connections = 20000
		[delivery]
		delivered_to = "$3"
		[delivery.maildir]
		root = "$1/mail"
		template = "{domain}/{user}"
		$flushline
		[[domain]]
		name = "example.test"
		any_user = true
	EOF
}

start_lmtpd() {
	lmtpd_config "$1" "$2" single
	"$work/bin/lmtpd" -config "$1/lmtpd.toml" 2>"$1/log" &
	server_pid=$!
}
# lmtpd runs with its default flush ("auto": "ordered" on the loop ext4);
# lmtpd-fsync with flush = "fsync", two journal commits per message, for
# comparison (1k-c8 and 1k-c8-r5 only: about 40 s more with RUNS=3).
start_lmtpd-fsync() {
	lmtpd_config "$1" "$2" single fsync
	"$work/bin/lmtpd" -config "$1/lmtpd.toml" 2>"$1/log" &
	server_pid=$!
}
start_lmtpd-always() {
	lmtpd_config "$1" "$2" always
	"$work/bin/lmtpd" -config "$1/lmtpd.toml" 2>"$1/log" &
	server_pid=$!
}
# The proxy (issue 16): a front lmtpd whose domain routes every recipient
# over LMTP (loopback TCP) to a backend lmtpd configured as the "lmtpd"
# row, which stores them. server_pid is the front: loadgen measures its
# CPU and memory, so the row's CPU and RSS are the proxy's own cost; the
# backend's CPU lands in "other CPU". Returns 1 (nothing left running)
# when the backend does not come up.
start_lmtpd-proxy() {
	local bport
	mkdir -p "$1/backend"
	bport=$(free_port)
	start_lmtpd "$1/backend" "$bport"
	backend_pid=$server_pid
	server_pid=
	# Ready when it has greeted one connection (nothing is delivered).
	if ! "$work/bin/loadgen" -addr "127.0.0.1:$bport" -wait 20s -pid "$backend_pid" -idle 1 -hold 0s -o /dev/null 2>/dev/null; then
		say "backend of lmtpd-proxy did not come up; its log:"
		tail -5 "$1/backend/log" >&2 || true
		stop_server
		return 1
	fi
	lmtpd_config "$1" "$2" single
	echo "route = { lmtp = { address = \"127.0.0.1:$bport\" } }" >>"$1/lmtpd.toml"
	"$work/bin/lmtpd" -config "$1/lmtpd.toml" 2>"$1/log" &
	server_pid=$!
}
start_gosmtpd() {
	mkdir -p "$1/mail"
	"$work/bin/gosmtpd" -listen "127.0.0.1:$2" -maildir "$1/mail" 2>"$1/log" &
	server_pid=$!
}
# The copying variant, the reference before issue 18 (5 recipients only).
start_gosmtpd-copy() {
	mkdir -p "$1/mail"
	"$work/bin/gosmtpd" -listen "127.0.0.1:$2" -maildir "$1/mail" -copy 2>"$1/log" &
	server_pid=$!
}
start_dovecot() {
	mkdir -p "$1/run" "$1/state" "$1/mail"
	chown vmail:vmail "$1/mail"
	sed -e "s|@ROOT@|$1|g" -e "s|@PORT@|$2|g" "$repo/bench/dovecot.conf" >"$1/dovecot.conf"
	dovecot -F -c "$1/dovecot.conf" 2>"$1/log" &
	server_pid=$!
}
start_lmtpsink() {
	"$work/bin/lmtpsink" -listen "127.0.0.1:$2" 2>"$1/log" &
	server_pid=$!
}
start_gosmtpd-discard() {
	"$work/bin/gosmtpd" -listen "127.0.0.1:$2" -discard 2>"$1/log" &
	server_pid=$!
}
start_smtp-sink() {
	local user=()
	[ "$(id -u)" = 0 ] && user=(-u nobody)
	(cd "$1" && exec smtp-sink -L "${user[@]}" -m 20000 "127.0.0.1:$2" 4096) 2>"$1/log" &
	server_pid=$!
}

stop_server() {
	local pid
	for pid in ${server_pid:-} ${backend_pid:-}; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	server_pid=
	backend_pid=
}

# --- scenarios ---------------------------------------------------------------
load_servers="lmtpd gosmtpd dovecot lmtpsink gosmtpd-discard smtp-sink"
servers_for() {
	local s
	case $1 in
	# lmtpd-proxy: front → backend lmtpd, beside the direct lmtpd row.
	1k-c8) s="lmtpd lmtpd-fsync lmtpd-proxy ${load_servers#lmtpd }" ;;
	1k-c8-r5) s="lmtpd lmtpd-fsync lmtpd-proxy lmtpd-always gosmtpd gosmtpd-copy dovecot lmtpsink gosmtpd-discard smtp-sink" ;;
	# Dovecot serves one connection per lmtp process (100 by default):
	# 10,000 idle connections are not a Dovecot scenario.
	idle-10k) s="lmtpd gosmtpd smtp-sink" ;;
	*) s=$load_servers ;;
	esac
	[ $have_dovecot = 1 ] || s=${s//dovecot/}
	[ $have_sink = 1 ] || s=${s//smtp-sink/}
	echo $s
}
load_for() {
	case $1 in
	1k-c1) echo "-c 1 -size 1024 -duration $duration" ;;
	1k-c8) echo "-c 8 -size 1024 -duration $duration" ;;
	1k-c64) echo "-c 64 -size 1024 -duration $duration" ;;
	1k-c8-r5) echo "-c 8 -size 1024 -rcpts 5 -duration $duration" ;;
	100k-c8) echo "-c 8 -size 102400 -duration $duration" ;;
	200m) echo "-c 1 -size 209715200 -n 1" ;;
	idle-10k) echo "-idle 10000 -hold 2s" ;;
	*) say "unknown scenario $1"; exit 2 ;;
	esac
}

failures=()
start=$(date +%s)
for sc in $scenarios; do
	load=$(load_for "$sc")
	for run in $(seq 1 "$runs"); do
		for srv in $(servers_for "$sc"); do
			# A run that could not be made (exit 2: the server did not come
			# up, say its port was taken meanwhile) is tried once more.
			for attempt in 1 2; do
				dir="$trees/$sc/$srv-$run-$attempt"
				mkdir -p "$dir"
				port=$(free_port)
				status=0
				if "start_$srv" "$dir" "$port"; then
					# shellcheck disable=SC2086
					"$work/bin/loadgen" -addr "127.0.0.1:$port" -wait 20s -pid "$server_pid" \
						-scenario "$sc" -server "$srv" -run "$run" -o "$results" $load || status=$?
				else
					status=2
				fi
				stop_server
				[ $status = 0 ] && break
				say "$srv $sc run $run (attempt $attempt) exited $status; server log:"
				tail -5 "$dir/log" >&2 || true
				[ $status = 2 ] || break
			done
			[ $status = 0 ] || failures+=("$srv $sc run $run")
		done
	done
done
say "runs took $(($(date +%s) - start))s; results in $results"
[ ${#failures[@]} = 0 ] || say "FAILED: ${failures[*]}"

# --- optional profiles -------------------------------------------------------
if [ "${PROFILE:-0}" = 1 ]; then
	for sc in 1k-c8 100k-c8; do
		dir="$trees/profile/$sc"
		mkdir -p "$dir"
		port=$(free_port)
		"$work/bin/lmtpsink" -listen "127.0.0.1:$port" -cpuprofile "$dir/lmtpsink.pprof" 2>"$dir/log" &
		server_pid=$!
		# shellcheck disable=SC2086
		"$work/bin/loadgen" -addr "127.0.0.1:$port" -wait 20s -server lmtpsink -scenario "$sc" -o /dev/null $(load_for "$sc") || true
		stop_server
		go tool pprof -top -nodecount 25 "$work/bin/lmtpsink" "$dir/lmtpsink.pprof" >"${results%.jsonl}-lmtpsink-$sc.txt" 2>/dev/null || true
		if command -v perf >/dev/null 2>&1; then
			port=$(free_port)
			start_lmtpd "$dir" "$port"
			"$work/bin/loadgen" -addr "127.0.0.1:$port" -wait 20s -n 1 -o /dev/null 2>/dev/null || true
			perf record -q -g -o "$dir/perf.data" -p "$server_pid" -- sleep "${duration%s}" >/dev/null 2>&1 &
			perf_pid=$!
			# shellcheck disable=SC2086
			"$work/bin/loadgen" -addr "127.0.0.1:$port" -server lmtpd -scenario "$sc" -o /dev/null $(load_for "$sc") || true
			wait "$perf_pid" || true
			stop_server
			perf report -i "$dir/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null |
				grep -v '^$' | grep -v '^#' | grep '%' | head -40 >"${results%.jsonl}-lmtpd-$sc.txt" || true
		fi
		say "profiles of $sc in ${results%.jsonl}-*-$sc.txt"
	done
fi

# --- report ------------------------------------------------------------------
versions=()
command -v dovecot >/dev/null 2>&1 && versions+=("Dovecot $(dovecot --version 2>/dev/null | cut -d' ' -f1)")
command -v postconf >/dev/null 2>&1 && versions+=("Postfix $(postconf -d -h mail_version 2>/dev/null)")
versions+=("go-smtp $(go list -m -f '{{.Version}}' github.com/emersion/go-smtp 2>/dev/null)")
versions+=("lmtpd $(git describe --tags --always --dirty 2>/dev/null || echo dev)")
joined=$(IFS=,; echo "${versions[*]}")
"$work/bin/report" -command "RUNS=$runs DURATION=$duration scripts/bench-e2e.sh" -versions "${joined//,/, }" \
	-fs "$fs_desc" "${report_args[@]}" "$results"
[ ${#failures[@]} = 0 ]
