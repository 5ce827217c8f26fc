#!/bin/sh
# flaky.sh READY OUTDIR: a pipe delivery command that is not ready until the
# file READY exists. Before that it exits 75 (EX_TEMPFAIL, sysexits.h), which
# lmtpd reports as 451 4.3.0 and Postfix defers; after that it stores the
# message from standard input as a new file in OUTDIR and exits 0.
if [ ! -e "$1" ]; then
	echo "not ready: $1 does not exist"
	exit 75
fi
mkdir -p "$2" || exit 73
f="$2/$(date +%s%N).$$"
cat >"$f.part" && mv "$f.part" "$f" || exit 74
exit 0
