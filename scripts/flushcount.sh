#!/usr/bin/env bash
# Flushes per delivered message (issue 18): how many fsync(2), fdatasync(2),
# syncfs(2), sync(2), sync_file_range(2) and msync(2) calls a server makes
# per message under load (fsyncs submitted through io_submit(2) counted as
# fsyncs), and how many ext4 journal commits that costs.
#
#   scripts/flushcount.sh lmtpd lmtpd-fsync lmtpd-syncfs lmtpd-ordered gosmtpd gosmtpd-copy dovecot   # servers it starts
#   scripts/flushcount.sh -pid 1234 -addr 127.0.0.1:24 -fs /var/mail  # one running
#
# Every server named is started fresh on a fresh maildir tree (as bench-e2e.sh
# does: lmtpd with delivered_to = "single" and its default flush = "auto",
# which is "ordered" on FS=loop and "fsync" where that is not safe (its
# info line says which; the script logs at warn level, so as not to log
# every delivery, and does not show it), lmtpd-fsync the same with
# flush = "fsync", lmtpd-syncfs with flush = "syncfs", lmtpd-ordered with
# flush = "ordered" (on FS=loop; elsewhere it falls back to fsync and says
# so in its log), bench/gosmtpd with hard links or
# -copy, Dovecot with bench/dovecot.conf) and measured in two passes of
# N messages from bench/loadgen after WARMUP messages (so that the mailboxes
# exist: the counts are of the steady state):
#   1. untraced: the ext4 journal's commits over the pass, from
#      /proc/fs/jbd2/<device>/info (the flushes the disk sees: concurrent
#      fsyncs share a commit), and the messages per second of that pass
#      (loadgen's figure: one short run on whatever else the machine does,
#      a sanity check, not a benchmark);
#   2. under `strace -f` on the server's process tree (children it starts
#      later, such as Dovecot's lmtp workers, included): the flush system
#      calls the server asks for. strace slows the server, which changes how
#      many deliveries run at once, not how many calls each makes (lmtpd's
#      group commit excepted: fewer directory fsyncs when more share one).
#
# Environment: N (default 2000) messages per pass, C (8) connections,
# RCPTS (1) recipients per message, SIZE (1024) bytes, WARMUP (50).
# FS=loop (the default as root) puts the trees on a fresh ext4 file system
# on a loop device, so that its journal counts only this server; FS=tmp uses
# $TMPDIR (the journal column is then left out: other writers share it).
# Dovecot needs root, dovecot-core and dovecot-lmtpd; the vmail user (uid
# 5000) is created as bench-e2e.sh does. Needs strace.
#
# With -pid and -addr it measures a server already running at that address
# (its process tree from PID) instead; -fs names a directory on the file
# system it delivers to, for the journal count.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

n=${N:-2000}
c=${C:-8}
rcpts=${RCPTS:-1}
size=${SIZE:-1024}
warmup=${WARMUP:-50}

say() { echo "flushcount: $*" >&2; }

pid_arg= addr_arg= fs_arg=
servers=()
while [ $# -gt 0 ]; do
	case $1 in
	-pid) pid_arg=$2; shift 2 ;;
	-addr) addr_arg=$2; shift 2 ;;
	-fs) fs_arg=$2; shift 2 ;;
	-h | --help) sed -n '2,/^set -e/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
	-*) say "unknown option $1"; exit 2 ;;
	*) servers+=("$1"); shift ;;
	esac
done
if { [ -n "$pid_arg" ] && [ -z "$addr_arg" ]; } || { [ -z "$pid_arg" ] && [ -n "$addr_arg" ]; }; then
	say "-pid and -addr go together"; exit 2
fi
if [ -z "$pid_arg" ] && [ ${#servers[@]} -eq 0 ]; then
	say "name servers (lmtpd lmtpd-fsync lmtpd-syncfs lmtpd-ordered gosmtpd gosmtpd-copy dovecot) or give -pid and -addr"; exit 2
fi
command -v strace >/dev/null 2>&1 || { say "strace not found (apt-get install strace)"; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/lmtpd-flushcount.XXXXXX")
chmod 755 "$work"
server_pid=
mounted=
cleanup() {
	if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
	if [ -n "$mounted" ]; then umount "$mounted" 2>/dev/null || umount -l "$mounted" || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

say "building into $work/bin"
go build -trimpath -o "$work/bin/lmtpd" ./cmd/lmtpd
go build -trimpath -o "$work/bin/" ./bench/loadgen ./bench/gosmtpd

# jbd2_commits DIR prints the number of journal transactions so far of the
# ext4 file system holding DIR, or nothing if it has no journal statistics.
jbd2_commits() {
	local src dev info
	[ -n "$1" ] || return 0
	src=$(findmnt -no SOURCE -T "$1" 2>/dev/null) || return 0
	dev=$(basename "$(readlink -f "$src")")
	for info in /proc/fs/jbd2/"$dev"-*/info; do
		[ -r "$info" ] || continue
		awk 'NR==1 {print $1}' "$info"
		return 0
	done
}

# tree PID prints PID and its descendants.
tree() {
	local p=$1 kid
	echo "$p"
	for kid in $(cat /proc/"$p"/task/*/children 2>/dev/null); do tree "$kid"; done
}

free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 10000))
		ss -Htln "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return; }
	done
}

# --- servers (as in scripts/bench-e2e.sh) -----------------------------------
start_lmtpd() {
	local flushline=
	[ -z "${flush:-}" ] || flushline="flush = \"$flush\""
	cat >"$1/lmtpd.toml" <<-EOF
		[log]
		format = "json"
		level = "warn"
		[server]
		hostname = "lmtpd.example.test"
		shutdown_grace = "1s"
		[[listener]]
		name = "lmtp"
		protocol = "lmtp"
		address = "127.0.0.1:$2"
		max_message_size = 0
		[delivery]
		delivered_to = "single"
		[delivery.maildir]
		root = "$1/mail"
		template = "{domain}/{user}"
		$flushline
		[[domain]]
		name = "example.test"
		any_user = true
	EOF
	mkdir -p "$1/mail"
	"$work/bin/lmtpd" -config "$1/lmtpd.toml" 2>"$1/log" &
	server_pid=$!
}
start_lmtpd-fsync() {
	flush=fsync start_lmtpd "$@"
}
start_lmtpd-ordered() {
	flush=ordered start_lmtpd "$@"
}
start_lmtpd-syncfs() {
	flush=syncfs start_lmtpd "$@"
}
start_gosmtpd() {
	mkdir -p "$1/mail"
	"$work/bin/gosmtpd" -listen "127.0.0.1:$2" -maildir "$1/mail" 2>"$1/log" &
	server_pid=$!
}
start_gosmtpd-copy() {
	mkdir -p "$1/mail"
	"$work/bin/gosmtpd" -listen "127.0.0.1:$2" -maildir "$1/mail" -copy 2>"$1/log" &
	server_pid=$!
}
start_dovecot() {
	if [ "$(id -u)" != 0 ] || ! command -v dovecot >/dev/null 2>&1 || [ ! -x /usr/lib/dovecot/lmtp ]; then
		say "dovecot needs root, dovecot-core and dovecot-lmtpd: skipped"
		return 1
	fi
	if ! id vmail >/dev/null 2>&1; then # as scripts/bench-e2e.sh does
		getent group vmail >/dev/null || groupadd -g 5000 vmail
		useradd -u 5000 -g vmail -M -s /usr/sbin/nologin vmail
	fi
	mkdir -p "$1/run" "$1/state" "$1/mail"
	chown vmail:vmail "$1/mail"
	sed -e "s|@ROOT@|$1|g" -e "s|@PORT@|$2|g" "$repo/bench/dovecot.conf" >"$1/dovecot.conf"
	dovecot -F -c "$1/dovecot.conf" 2>"$1/log" &
	server_pid=$!
}

# loadgen ADDR COUNT runs COUNT messages and prints the number that every
# recipient accepted and the messages per second.
load() {
	local out
	out=$("$work/bin/loadgen" -addr "$1" -wait 20s -n "$2" -c "$c" -rcpts "$rcpts" -size "$size" -o /dev/stdout 2>"$work/loadgen.err") || {
		say "loadgen failed:"; cat "$work/loadgen.err" >&2; return 1
	}
	echo "$(echo "$out" | grep -o '"messages":[0-9]*' | cut -d: -f2) $(echo "$out" | grep -o '"msgs_per_s":[0-9.]*' | cut -d: -f2)"
}

# measure NAME ADDR PID DIR: the two passes, one line of the table.
measure() {
	local name=$1 addr=$2 pid=$3 dir=$4 j0 j1 m1 m2 rate trace pids=() p
	[ "$warmup" -gt 0 ] && load "$addr" "$warmup" >/dev/null
	j0=$(jbd2_commits "$dir")
	read -r m1 rate < <(load "$addr" "$n")
	j1=$(jbd2_commits "$dir")
	trace="$work/$name.strace"
	for p in $(tree "$pid"); do pids+=(-p "$p"); done
	strace -f -qq -s 1024 -o "$trace" -e trace=fsync,fdatasync,syncfs,sync,sync_file_range,msync,io_submit "${pids[@]}" &
	local spid=$!
	sleep 1 # strace attaches
	read -r m2 _ < <(load "$addr" "$n")
	kill -INT "$spid"
	wait "$spid" 2>/dev/null || true
	# One line per call ("PID name(args...", a call interrupted by another
	# thread's continues in a "<... name resumed>" line, not counted).
	# io_submit(2) counts as the fsyncs and fdatasyncs it submits (Linux
	# AIO: lmtpd's ordered flush submits a directory's and files' fsyncs
	# together), which strace decodes in its iocb array (-s: up to 1,024
	# entries; lmtpd submits at most 128 at once).
	awk -v name="$name" -v m1="$m1" -v m2="$m2" -v r="$rcpts" -v j0="$j0" -v j1="$j1" -v rate="$rate" '
		match($0, /^[0-9]+ +[a-z_0-9]+\(/) {
			call = substr($0, RSTART, RLENGTH - 1)
			sub(/^[0-9]+ +/, "", call)
			if (call == "io_submit") {
				calls["fsync"] += gsub(/IOCB_CMD_FSYNC/, "")
				calls["fdatasync"] += gsub(/IOCB_CMD_FDSYNC/, "")
			} else {
				calls[call]++
			}
		}
		END {
			f = calls["fsync"] + 0; d = calls["fdatasync"] + 0; s = calls["syncfs"] + calls["sync"] + 0
			o = calls["sync_file_range"] + calls["msync"] + 0
			j = (j0 != "" && j1 != "") ? sprintf("%.3f", (j1 - j0) / m1) : "–"
			printf "| %s | %d × %d rcpt | %.3f | %.3f | %.3f | %.3f | %.3f | %s | %.0f |\n",
				name, m2, r, f / m2, d / m2, s / m2, o / m2, (f + d + s + o) / m2, j, rate
		}' "$trace"
}

fs=${FS:-}
if [ -z "$fs" ]; then
	fs=tmp
	[ "$(id -u)" = 0 ] && command -v mkfs.ext4 >/dev/null 2>&1 && fs=loop
fi

echo "Flush calls per delivered message, $n messages of $size bytes to $rcpts recipient(s) at concurrency $c after $warmup to warm up; journal commits per message and msgs/s from an untraced pass of the same load."
echo
echo "| server | messages | fsync | fdatasync | syncfs/sync | sync_file_range/msync | all flush calls | ext4 journal commits | msgs/s (untraced) |"
echo "|---|---|---|---|---|---|---|---|---|"

if [ -n "$pid_arg" ]; then
	measure "pid $pid_arg" "$addr_arg" "$pid_arg" "$fs_arg"
	exit 0
fi

for srv in "${servers[@]}"; do
	declare -F "start_$srv" >/dev/null || { say "unknown server $srv (lmtpd lmtpd-fsync lmtpd-syncfs lmtpd-ordered gosmtpd gosmtpd-copy dovecot)"; exit 2; }
	dir="$work/$srv"
	mkdir -p "$dir"
	chmod 755 "$dir"
	if [ "$fs" = loop ]; then
		truncate -s 4G "$work/$srv.img"
		mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$work/$srv.img"
		mount -o loop "$work/$srv.img" "$dir"
		mounted=$dir
		chmod 755 "$dir"
	fi
	port=$(free_port)
	if "start_$srv" "$dir" "$port"; then
		# On $TMPDIR the journal is shared with everything else: no count.
		measure "$srv" "127.0.0.1:$port" "$server_pid" "$([ "$fs" = loop ] && echo "$dir")"
		if [ "$srv" = lmtpd-ordered ] && grep -q 'not safe on this file system' "$dir/log"; then
			say "lmtpd-ordered fell back to flush = \"fsync\" here: $(grep -o '"reason":"[^"]*"' "$dir/log" | head -1)"
		fi
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	server_pid=
	if [ -n "$mounted" ]; then umount "$mounted"; mounted=; rm -f "$work/$srv.img"; fi
done
