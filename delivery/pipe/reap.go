package pipe

import (
	"crypto/rand"
	"encoding/hex"
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
	forks uint64 // clones since boot before the command started (see forkCount); 0: unknown
}

// maxReapRounds bounds the find-and-kill loop of reap. Each round kills
// every process found, and a process killed with SIGKILL forks no more,
// so the loop ends after the round that finds nothing new; the bound is
// for a pathological fork storm racing the scan.
const maxReapRounds = 16

// reap kills with SIGKILL every process of the run it can find: (where
// the platform allows, see scanRun) the members of the process group, the
// descendants of the command while it is alive and every process carrying
// the run's token, each by its pid, and then the process group as a whole
// for any member the scan missed, repeated until a round finds no new
// process. It returns how many processes the scans found and signalled,
// for the log and tests, and whether the group kill reached anyone.
func reap(tr tracked) (found int, group bool) {
	seen := make(map[int]bool)
	for round := 0; round < maxReapRounds; round++ {
		fresh := 0
		for _, p := range scanRun(tr) {
			if seen[p] {
				continue
			}
			seen[p] = true
			fresh++
			if syscall.Kill(p, syscall.SIGKILL) == nil {
				found++
			}
		}
		// EPERM (a member changed uid) and ESRCH (none left) are no
		// reason to stop: the scan tried each process it saw.
		if tr.pgid > 0 && syscall.Kill(-tr.pgid, syscall.SIGKILL) == nil {
			group = true
		}
		if fresh == 0 {
			break
		}
	}
	return found, group
}
