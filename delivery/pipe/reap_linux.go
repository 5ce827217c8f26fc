package pipe

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
)

// procDir is where scanRun reads the process table.
const procDir = "/proc"

// scanRun returns the pids of live processes that belong to tr: members
// of its process group, descendants of tr.pid (when it is set, that is
// while the command has not been reaped, so the pid cannot have been
// reused), and processes of tr.uid whose environment holds the run's
// token. Zombies are left out: they are dead already; so are processes
// that started before tr.start. lmtpd itself is never returned.
//
// It reads /proc/PID/stat of every process and /proc/PID/environ only of
// processes owned by tr.uid that nothing else matched. The environment of
// another user's process is not readable without root; a run-as command
// runs as another user only when lmtpd is root, so that is no gap.
func scanRun(tr tracked) []int {
	d, err := os.Open(procDir)
	if err != nil {
		return nil
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	self := os.Getpid()
	type proc struct{ ppid, pgrp int }
	procs := make(map[int]proc, len(names))
	var out []int
	var needle []byte
	if tr.token != "" {
		needle = []byte(runTokenVar + "=" + tr.token + "\x00")
	}
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil || pid == self {
			continue
		}
		st, ok := readStat(pid)
		if !ok || st.zombie || st.start < tr.start {
			// Dead already, or started before the command: not the run's.
			continue
		}
		ppid, pgrp := st.ppid, st.pgrp
		procs[pid] = proc{ppid, pgrp}
		switch {
		case tr.pgid > 0 && pgrp == tr.pgid:
			out = append(out, pid)
		case needle != nil && ownedBy(pid, tr.uid) && environHas(pid, needle):
			out = append(out, pid)
		}
	}
	if tr.pid > 0 {
		// Descendants of the command: children lists from the ppid links.
		children := make(map[int][]int)
		for pid, p := range procs {
			children[p.ppid] = append(children[p.ppid], pid)
		}
		in := make(map[int]bool, len(out))
		for _, p := range out {
			in[p] = true
		}
		queue := []int{tr.pid}
		for len(queue) > 0 {
			p := queue[0]
			queue = queue[1:]
			for _, c := range children[p] {
				if !in[c] {
					in[c] = true
					out = append(out, c)
				}
				queue = append(queue, c)
			}
		}
	}
	return out
}

// procStat is what scanRun needs of /proc/PID/stat.
type procStat struct {
	ppid, pgrp int
	start      uint64 // start time, clock ticks after boot
	zombie     bool
}

// readStat parses /proc/PID/stat: "pid (comm) state ppid pgrp ...", where
// comm may hold anything, so fields are counted from the last ')'; the
// start time is field 22 (proc(5)).
func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile(procDir + "/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3, the state
	if len(f) < 20 {
		return procStat{}, false
	}
	ppid, err1 := strconv.Atoi(string(f[1]))
	pgrp, err2 := strconv.Atoi(string(f[2]))
	start, err3 := strconv.ParseUint(string(f[19]), 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return procStat{}, false
	}
	return procStat{ppid: ppid, pgrp: pgrp, start: start, zombie: f[0][0] == 'Z' || f[0][0] == 'X'}, true
}

// startTime returns the start time of pid in clock ticks after boot, 0 if
// it cannot be read. Every process the command starts starts no earlier,
// so scanRun looks at nothing older: that skips the environment reads of
// the rest of the system, and a pid reused by an older process.
func startTime(pid int) uint64 {
	st, ok := readStat(pid)
	if !ok {
		return 0
	}
	return st.start
}

// ownedBy reports whether /proc/PID belongs to uid (the process's
// effective uid for a dumpable process).
func ownedBy(pid, uid int) bool {
	var st syscall.Stat_t
	if err := syscall.Stat(procDir+"/"+strconv.Itoa(pid), &st); err != nil {
		return false
	}
	return int(st.Uid) == uid
}

// environHas reports whether the initial environment of pid contains the
// NUL-terminated entry needle.
func environHas(pid int, needle []byte) bool {
	b, err := os.ReadFile(procDir + "/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	return bytes.HasPrefix(b, needle) || bytes.Contains(b, append([]byte{0}, needle...))
}
