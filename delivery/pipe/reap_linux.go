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
// It reads /proc/PID/stat of every process allocated since the command
// (see pidWindow; of every process when that is unknown) and
// /proc/PID/environ only of
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
	inWindow := pidWindow(tr)
	type proc struct{ ppid, pgrp int }
	procs := make(map[int]proc, len(names))
	var out []int
	var needle []byte
	if tr.token != "" {
		needle = []byte(runTokenVar + "=" + tr.token + "\x00")
	}
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil || pid == self || !inWindow(pid) {
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
//
// scanRun calls it for every process on the system after every run, so
// it is the reaper's cost: it reads with open, read and close on a stack
// buffer rather than os.ReadFile, which adds an fstat, a netpoller
// registration and heap buffers per file (profiled on BenchmarkRunTrue:
// os.ReadFile was two thirds of a run's CPU).
func readStat(pid int) (procStat, bool) {
	var path [32]byte
	p := append(path[:0], procDir+"/"...)
	p = strconv.AppendInt(p, int64(pid), 10)
	p = append(p, "/stat"...)
	var buf [1024]byte // comm is at most 64 bytes; the fields we need come early
	n, ok := readSmall(string(p), buf[:])
	if !ok {
		return procStat{}, false
	}
	b := buf[:n]
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, false
	}
	var f [20][]byte // fields 3 to 22
	k := 0
	for rest := b[i+1:]; k < len(f); k++ {
		for len(rest) > 0 && rest[0] == ' ' {
			rest = rest[1:]
		}
		j := bytes.IndexAny(rest, " \n")
		if j < 0 {
			j = len(rest)
		}
		if j == 0 {
			break
		}
		f[k], rest = rest[:j], rest[j:]
	}
	if k < len(f) {
		return procStat{}, false
	}
	ppid, ok1 := atoi(f[1])
	pgrp, ok2 := atoi(f[2])
	start, ok3 := atoi(f[19])
	if !ok1 || !ok2 || !ok3 {
		return procStat{}, false
	}
	return procStat{ppid: int(ppid), pgrp: int(pgrp), start: start, zombie: f[0][0] == 'Z' || f[0][0] == 'X'}, true
}

// readSmall reads up to len(buf) bytes of the file at path with plain
// system calls; a file longer than buf is cut, which suits /proc/PID/stat.
func readSmall(path string, buf []byte) (int, bool) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0, false
	}
	defer syscall.Close(fd)
	n := 0
	for n < len(buf) {
		m, err := syscall.Read(fd, buf[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, false
		}
		if m == 0 {
			break
		}
		n += m
	}
	return n, true
}

// atoi parses a decimal number without allocating.
func atoi(b []byte) (uint64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, true
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

// pidWindow returns a filter that passes every pid allocated since the
// command (its own included) and, in the common case, few others, so that
// scanRun reads /proc/PID/stat of a handful of processes rather than of
// the whole system. Linux hands out pids (and thread ids) cyclically: the
// next free id after the last one given, wrapping at pid_max. So every
// pid allocated after the command's lies in the cyclic range from the
// command's pid to the last one given (the 5th field of /proc/loadavg,
// for lmtpd's pid namespace), unless the allocator went the whole way
// round, which takes at least as many forks as there are free ids. The
// fork counter (/proc/stat "processes", every clone since boot, threads
// and other namespaces included, so never an undercount) read before the
// command started bounds that: the window is used only while fewer than
// pid_max/4 clones happened since (a lap would need more than three
// quarters of all pids to be free, that is more than pid_max/4 clones,
// or more than a quarter in use at once, where forks fail anyway). When
// anything is unknown, the filter passes everything: the full scan.
func pidWindow(tr tracked) func(int) bool {
	all := func(int) bool { return true }
	if tr.pgid <= 0 || tr.forks == 0 {
		return all
	}
	// The last pid is read before the fork count, so that the count
	// covers every allocation up to that pid.
	last, ok := lastPid()
	if !ok {
		return all
	}
	f := forkCount()
	pidMax := pidMax()
	if f < tr.forks || pidMax <= 0 || f-tr.forks >= uint64(pidMax/4) {
		return all
	}
	return cyclicRange(tr.pgid, last) // from the command's pid
}

// cyclicRange returns a test for the pids from first to last in
// allocation order, which wraps from pid_max to low pids.
func cyclicRange(first, last int) func(int) bool {
	if last >= first {
		return func(p int) bool { return p >= first && p <= last }
	}
	return func(p int) bool { return p >= first || p <= last }
}

// lastPid returns the pid most recently allocated in lmtpd's pid
// namespace, from /proc/loadavg ("0.00 0.01 0.05 1/123 4567").
func lastPid() (int, bool) {
	var buf [128]byte
	n, ok := readSmall(procDir+"/loadavg", buf[:])
	if !ok {
		return 0, false
	}
	f := bytes.Fields(buf[:n])
	if len(f) < 5 {
		return 0, false
	}
	v, ok := atoi(f[4])
	return int(v), ok && v > 0
}

// pidMax returns /proc/sys/kernel/pid_max, 0 if unknown.
func pidMax() int {
	var buf [32]byte
	n, ok := readSmall(procDir+"/sys/kernel/pid_max", buf[:])
	if !ok {
		return 0
	}
	v, ok := atoi(bytes.TrimSpace(buf[:n]))
	if !ok {
		return 0
	}
	return int(v)
}

// forkCount returns the number of clones since boot (/proc/stat
// "processes"), 0 if unknown.
func forkCount() uint64 {
	b, err := os.ReadFile(procDir + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.Index(b, []byte("\nprocesses "))
	if i < 0 {
		return 0
	}
	rest := b[i+len("\nprocesses "):]
	if j := bytes.IndexByte(rest, '\n'); j >= 0 {
		rest = rest[:j]
	}
	v, ok := atoi(bytes.TrimSpace(rest))
	if !ok {
		return 0
	}
	return v
}
