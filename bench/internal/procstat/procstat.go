// Package procstat measures a server under benchmark from the outside: the
// CPU time and the memory of a process and all its descendants, read from
// Linux's /proc (proc(5)).
//
// A multi-process server such as Dovecot (a master that forks lmtp, auth,
// log and config processes) is measured as one tree rooted at its master.
// CPU time is the sum over the live processes of the tree of utime+stime
// plus cutime+cstime: a descendant that has exited and been waited for is
// then counted once, in its parent's cutime/cstime. So the difference of
// two samples is the CPU the whole tree spent in between, as long as every
// process that exits is reaped by a parent inside the tree (true of a
// server master and its workers).
//
// Memory is the sum over the tree of VmRSS (resident now) and VmHWM (the
// peak resident set since the process started). For one process VmHWM is
// exact; for several it overstates the peak a little, since pages shared
// between processes are counted in each.
//
// Busy reads the whole machine's non-idle CPU time, so that a benchmark can
// tell how much else was running beside the processes it measures.
package procstat

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// ClockTick is the unit of the CPU times in /proc/PID/stat: USER_HZ, which
// Linux fixes at 100 per second for every architecture Go supports except
// alpha (proc(5), sysconf(_SC_CLK_TCK)).
const ClockTick = 10 * time.Millisecond

// ErrNoProcess reports that the root process of a sample does not exist
// (it exited, or the pid is wrong).
var ErrNoProcess = errors.New("procstat: no such process")

// Sample is one measurement of a process tree.
type Sample struct {
	// CPU is the user plus system time spent by the tree (see the package
	// doc for how exited descendants are counted), in ClockTick steps.
	CPU time.Duration
	// RSS is the sum of the processes' resident set sizes now, in bytes.
	RSS int64
	// HWM is the sum of the processes' peak resident set sizes, in bytes.
	HWM int64
	// Procs is the number of processes in the tree, the root included.
	Procs int
}

// stat is what Tree needs from one /proc/PID/stat line.
type stat struct {
	pid, ppid int
	ticks     int64 // utime + stime + cutime + cstime
}

// Reader samples process trees. Its zero value reads the real /proc; Root
// lets tests point it at a fake tree.
type Reader struct {
	// Root is the proc file system's mount point. Default "/proc".
	Root string
}

func (r Reader) root() string {
	if r.Root == "" {
		return "/proc"
	}
	return r.Root
}

// Tree samples the process pid and all its descendants. It returns
// ErrNoProcess if pid itself is gone; descendants that vanish while the
// tree is being read are skipped (their CPU time moves to their parent's
// cutime only once they are reaped, a race no reader of /proc can avoid).
func (r Reader) Tree(pid int) (Sample, error) {
	all, err := r.stats()
	if err != nil {
		return Sample{}, err
	}
	children := make(map[int][]int, len(all))
	byPID := make(map[int]stat, len(all))
	for _, s := range all {
		children[s.ppid] = append(children[s.ppid], s.pid)
		byPID[s.pid] = s
	}
	if _, ok := byPID[pid]; !ok {
		return Sample{}, fmt.Errorf("%w: %d", ErrNoProcess, pid)
	}
	var out Sample
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		queue = append(queue, children[p]...)
		out.CPU += time.Duration(byPID[p].ticks) * ClockTick
		out.Procs++
		rss, hwm, err := r.memory(p)
		if err != nil {
			if p == pid {
				return Sample{}, err
			}
			continue
		}
		out.RSS += rss
		out.HWM += hwm
	}
	return out, nil
}

// stats reads /proc/*/stat for every process.
func (r Reader) stats() ([]stat, error) {
	entries, err := os.ReadDir(r.root())
	if err != nil {
		return nil, fmt.Errorf("procstat: %w", err)
	}
	var out []stat
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join(r.root(), e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		s, err := parseStat(data)
		if err != nil {
			return nil, fmt.Errorf("procstat: %s/stat: %w", e.Name(), err)
		}
		out = append(out, s)
	}
	return out, nil
}

// parseStat parses a /proc/PID/stat line: "pid (comm) state ppid ...",
// where comm may itself contain spaces and parentheses, so the fields are
// counted from the last ')'. utime, stime, cutime and cstime are fields 14
// to 17 (proc(5), counting from 1).
func parseStat(data []byte) (stat, error) {
	open := bytes.IndexByte(data, '(')
	end := bytes.LastIndexByte(data, ')')
	if open < 1 || end < open {
		return stat{}, errors.New("malformed stat line")
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(data[:open])))
	if err != nil {
		return stat{}, fmt.Errorf("bad pid: %w", err)
	}
	f := bytes.Fields(data[end+1:])
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 17-3+1 {
		return stat{}, errors.New("short stat line")
	}
	ppid, err := strconv.Atoi(string(f[4-3]))
	if err != nil {
		return stat{}, fmt.Errorf("bad ppid: %w", err)
	}
	var ticks int64
	for n := 14; n <= 17; n++ {
		v, err := strconv.ParseInt(string(f[n-3]), 10, 64)
		if err != nil {
			return stat{}, fmt.Errorf("bad field %d: %w", n, err)
		}
		ticks += v
	}
	return stat{pid: pid, ppid: ppid, ticks: ticks}, nil
}

// memory reads VmRSS and VmHWM from /proc/PID/status, in bytes. A kernel
// thread or zombie has neither line; it counts as zero.
func (r Reader) memory(pid int) (rss, hwm int64, err error) {
	data, err := os.ReadFile(filepath.Join(r.root(), strconv.Itoa(pid), "status"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, 0, fmt.Errorf("%w: %d", ErrNoProcess, pid)
		}
		return 0, 0, fmt.Errorf("procstat: %w", err)
	}
	for line := range bytes.Lines(data) {
		var dst *int64
		switch {
		case bytes.HasPrefix(line, []byte("VmRSS:")):
			dst = &rss
		case bytes.HasPrefix(line, []byte("VmHWM:")):
			dst = &hwm
		default:
			continue
		}
		f := bytes.Fields(line)
		if len(f) != 3 || string(f[2]) != "kB" {
			return 0, 0, fmt.Errorf("procstat: %d/status: malformed %q", pid, bytes.TrimSpace(line))
		}
		v, err := strconv.ParseInt(string(f[1]), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("procstat: %d/status: %w", pid, err)
		}
		*dst = v * 1024
	}
	return rss, hwm, nil
}

// Tree samples pid's process tree from the real /proc.
func Tree(pid int) (Sample, error) { return Reader{}.Tree(pid) }

// Busy returns the CPU time the whole machine has spent running processes
// and kernel threads since boot, summed over CPUs: user, nice, system and
// steal from the first line of /proc/stat. Idle and iowait are left out,
// and so are irq and softirq, where the kernel accounts the loopback
// network traffic of the benchmark itself; guest time is already inside
// user. The difference of two readings, less what the measured processes
// spent, is what other processes and kernel threads (the file system
// journal, a loop device's workers) used meanwhile, plus time the
// hypervisor gave to other machines (steal).
func (r Reader) Busy() (time.Duration, error) {
	data, err := os.ReadFile(filepath.Join(r.root(), "stat"))
	if err != nil {
		return 0, fmt.Errorf("procstat: %w", err)
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 9 || string(f[0]) != "cpu" {
		return 0, fmt.Errorf("procstat: stat: malformed first line %q", line)
	}
	var ticks int64
	// cpu user nice system idle iowait irq softirq steal ...
	for _, i := range []int{1, 2, 3, 8} {
		v, err := strconv.ParseInt(string(f[i]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("procstat: stat: %w", err)
		}
		ticks += v
	}
	return time.Duration(ticks) * ClockTick, nil
}

// Alive reports whether pid exists and is not a zombie (a process that
// exited and waits for its parent to collect its status).
func (r Reader) Alive(pid int) bool {
	data, err := os.ReadFile(filepath.Join(r.root(), strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	end := bytes.LastIndexByte(data, ')')
	if end < 0 {
		return false
	}
	f := bytes.Fields(data[end+1:])
	return len(f) > 0 && string(f[0]) != "Z" && string(f[0]) != "X"
}

// Alive reports whether pid is a live process in the real /proc.
func Alive(pid int) bool { return Reader{}.Alive(pid) }

// Busy reads the real /proc/stat.
func Busy() (time.Duration, error) { return Reader{}.Busy() }
