package pipe

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"syscall"
)

// runTokenVar is the environment variable that marks every process of one
// run: the command gets it and its descendants inherit it, including those
// that leave the process group (setsid) or are orphaned (double fork), so
// that reap can find them when the process tree no longer leads there.
const runTokenVar = "LMTPD_PIPE_RUN"

// newRunToken returns a fresh random token for one run.
func newRunToken() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on Linux; without a token the group
		// kill and the tree walk still apply.
		return ""
	}
	return hex.EncodeToString(b[:])
}

// tracked identifies what one run started: the command's process group
// (its pid, by Setpgid), the command itself while it is not yet reaped,
// and the token in the environment of everything it started.
type tracked struct {
	pid   int    // the command; 0 once it was reaped (its pid may be reused)
	pgid  int    // the command's process group
	uid   int    // the uid the command runs as
	token string // value of runTokenVar, "" if none
	start uint64 // the command's start time (see startTime); 0: unknown
}

// maxReapRounds bounds the find-and-kill loop of reap. Each round kills
// every process found, and a process killed with SIGKILL forks no more,
// so the loop ends after the round that finds nothing new; the bound is
// for a pathological fork storm racing the scan.
const maxReapRounds = 16

// reap kills with SIGKILL every process of the run it can find: the
// process group, then (where the platform allows, see scanRun) the
// descendants of the command while it is alive and every process carrying
// the run's token, repeated until a round finds no new process. It
// returns how many processes it signalled outside the group kill, for the
// log and tests, and whether the group kill reached anyone.
func reap(tr tracked) (others int, group bool) {
	seen := make(map[int]bool)
	for round := 0; round < maxReapRounds; round++ {
		if tr.pgid > 0 {
			if err := syscall.Kill(-tr.pgid, syscall.SIGKILL); err == nil {
				group = true
			} else if !errors.Is(err, syscall.ESRCH) {
				_ = err // EPERM: a member changed uid; the scan below still tries each one
			}
		}
		fresh := 0
		for _, p := range scanRun(tr) {
			if seen[p] {
				continue
			}
			seen[p] = true
			fresh++
			if syscall.Kill(p, syscall.SIGKILL) == nil {
				others++
			}
		}
		if fresh == 0 {
			break
		}
	}
	return others, group
}
