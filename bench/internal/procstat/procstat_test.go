package procstat

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// fakeProc is one process of a fake /proc tree.
type fakeProc struct {
	pid, ppid int
	comm      string
	ticks     [4]int64 // utime stime cutime cstime
	status    string   // "" writes a normal status with rss/hwm
	rss, hwm  int64    // kB
	noStatus  bool
}

func writeFake(t *testing.T, procs []fakeProc) string {
	t.Helper()
	root := t.TempDir()
	for _, p := range procs {
		dir := filepath.Join(root, strconv.Itoa(p.pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		comm := p.comm
		if comm == "" {
			comm = "srv"
		}
		stat := fmt.Sprintf("%d (%s) S %d 1 1 0 -1 4194304 10 0 0 0 %d %d %d %d 20 0 1 0 100 1000 10\n",
			p.pid, comm, p.ppid, p.ticks[0], p.ticks[1], p.ticks[2], p.ticks[3])
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
		if p.noStatus {
			continue
		}
		status := p.status
		if status == "" {
			status = fmt.Sprintf("Name:\t%s\nVmHWM:\t%8d kB\nVmRSS:\t%8d kB\nThreads:\t1\n", comm, p.hwm, p.rss)
		}
		if err := os.WriteFile(filepath.Join(dir, "status"), []byte(status), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Entries that are not processes are ignored.
	if err := os.WriteFile(filepath.Join(root, "meminfo"), []byte("MemTotal: 1 kB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestTreeFake(t *testing.T) {
	procs := []fakeProc{
		{pid: 1, ppid: 0, ticks: [4]int64{1000, 1000, 0, 0}, rss: 1, hwm: 1},
		{pid: 10, ppid: 1, comm: "dovecot", ticks: [4]int64{5, 3, 7, 1}, rss: 4000, hwm: 5000},
		{pid: 11, ppid: 10, comm: "dovecot/lmtp (x) y", ticks: [4]int64{20, 10, 0, 0}, rss: 3000, hwm: 3500},
		{pid: 12, ppid: 11, comm: "grandchild", ticks: [4]int64{1, 1, 0, 0}, rss: 100, hwm: 200},
		{pid: 13, ppid: 10, comm: "zombie", ticks: [4]int64{2, 0, 0, 0}, status: "Name:\tzombie\nState:\tZ\n"},
		{pid: 20, ppid: 1, comm: "other", ticks: [4]int64{99, 99, 0, 0}, rss: 9, hwm: 9},
	}
	r := Reader{Root: writeFake(t, procs)}
	tests := []struct {
		name string
		pid  int
		want Sample
	}{
		{"whole tree", 10, Sample{CPU: (5 + 3 + 7 + 1 + 20 + 10 + 1 + 1 + 2) * ClockTick, RSS: 7100 * 1024, HWM: 8700 * 1024, Procs: 4}},
		{"subtree", 11, Sample{CPU: 32 * ClockTick, RSS: 3100 * 1024, HWM: 3700 * 1024, Procs: 2}},
		{"leaf", 20, Sample{CPU: 198 * ClockTick, RSS: 9 * 1024, HWM: 9 * 1024, Procs: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.Tree(tc.pid)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Tree(%d) = %+v, want %+v", tc.pid, got, tc.want)
			}
		})
	}
}

func TestTreeErrors(t *testing.T) {
	tests := []struct {
		name   string
		procs  []fakeProc
		root   string // overrides the fake tree
		pid    int
		target error // errors.Is target, nil: any error
	}{
		{name: "missing pid", procs: []fakeProc{{pid: 5, ppid: 1}}, pid: 6, target: ErrNoProcess},
		{name: "root without status", procs: []fakeProc{{pid: 5, ppid: 1, noStatus: true}}, pid: 5, target: ErrNoProcess},
		{name: "bad rss value", procs: []fakeProc{{pid: 5, ppid: 1, status: "VmRSS:\tlots kB\n"}}, pid: 5},
		{name: "bad rss unit", procs: []fakeProc{{pid: 5, ppid: 1, status: "VmHWM:\t12 pages\n"}}, pid: 5},
		{name: "no proc dir", root: "/nonexistent/proc", pid: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := tc.root
			if root == "" {
				root = writeFake(t, tc.procs)
			}
			_, err := Reader{Root: root}.Tree(tc.pid)
			if err == nil {
				t.Fatal("no error")
			}
			if tc.target != nil && !errors.Is(err, tc.target) {
				t.Errorf("error %v, want %v", err, tc.target)
			}
		})
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    stat
		wantErr bool
	}{
		{"plain", "42 (lmtpd) S 1 42 42 0 -1 0 0 0 0 0 3 4 5 6 20 0", stat{42, 1, 18}, false},
		{"comm with parens and spaces", "7 (a) b (c) R 3 0 0 0 0 0 0 0 0 0 1 1 1 1 0 0", stat{7, 3, 4}, false},
		{"no parens", "42 lmtpd S 1", stat{}, true},
		{"bad pid", "x (lmtpd) S 1 42 42 0 -1 0 0 0 0 0 3 4 5 6", stat{}, true},
		{"short", "42 (lmtpd) S 1 42", stat{}, true},
		{"bad ppid", "42 (lmtpd) S p 42 42 0 -1 0 0 0 0 0 3 4 5 6", stat{}, true},
		{"bad utime", "42 (lmtpd) S 1 42 42 0 -1 0 0 0 0 0 u 4 5 6", stat{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStat([]byte(tc.line))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestTreeMalformedStat(t *testing.T) {
	root := writeFake(t, []fakeProc{{pid: 5, ppid: 1}})
	if err := os.WriteFile(filepath.Join(root, "5", "stat"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := (Reader{Root: root}).Tree(5); err == nil {
		t.Fatal("no error for a malformed stat file")
	}
}

// TestTreeReal samples this test process with a child: the child is in
// the tree, memory is non-zero, and CPU spent by the process shows up.
func TestTreeReal(t *testing.T) {
	cmd := exec.Command("sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start sleep: %v", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	before, err := Tree(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if before.Procs < 2 {
		t.Errorf("Procs = %d, want the test process and its child", before.Procs)
	}
	if before.RSS <= 0 || before.HWM < before.RSS {
		t.Errorf("RSS %d, HWM %d: want 0 < RSS <= HWM", before.RSS, before.HWM)
	}
	// Spin until the kernel has charged this process 100ms more CPU (by
	// its own account, getrusage), however busy the machine is, and then
	// expect Tree to see at least most of it (it counts in clock ticks).
	spent := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	x := 0
	for start := spent(); spent()-start < 100*time.Millisecond; {
		for range 10000 {
			x++
		}
	}
	after, err := Tree(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if d := after.CPU - before.CPU; d < 70*time.Millisecond {
		t.Errorf("CPU grew by %v after 100ms of CPU in a busy loop (%d iterations)", d, x)
	}
}

func TestBusy(t *testing.T) {
	tests := []struct {
		name    string
		stat    string
		want    time.Duration
		wantErr bool
	}{
		{"typical", "cpu  100 5 40 9000 70 1 2 3 0 0\ncpu0 50 0 20 4500 35 0 1 1 0 0\n", (100 + 5 + 40 + 3) * ClockTick, false},
		{"short line", "cpu 1 2 3\n", 0, true},
		{"not the cpu line", "intr 1 2 3 4 5 6 7 8 9\n", 0, true},
		{"bad number", "cpu  x 5 40 9000 70 1 2 3 0 0\n", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.WriteFile(filepath.Join(root, "stat"), []byte(tc.stat), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := Reader{Root: root}.Busy()
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("Busy = %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		if _, err := (Reader{Root: t.TempDir()}).Busy(); err == nil {
			t.Fatal("no error without /proc/stat")
		}
	})
	t.Run("real", func(t *testing.T) {
		a, err := Busy()
		if err != nil {
			t.Fatal(err)
		}
		for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
		}
		b, err := Busy()
		if err != nil {
			t.Fatal(err)
		}
		if b < a+20*time.Millisecond {
			t.Errorf("machine busy time grew from %v to %v over a 50ms busy loop", a, b)
		}
	})
}

func TestAlive(t *testing.T) {
	root := writeFake(t, []fakeProc{{pid: 5, ppid: 1}, {pid: 6, ppid: 1}})
	zombie := "6 (srv) Z 1 1 1 0 -1 4194304 10 0 0 0 1 1 0 0 20 0 1 0 100 0 0\n"
	if err := os.WriteFile(filepath.Join(root, "6", "stat"), []byte(zombie), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "7"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "7", "stat"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := Reader{Root: root}
	tests := []struct {
		name string
		pid  int
		want bool
	}{
		{"running", 5, true},
		{"zombie", 6, false},
		{"malformed", 7, false},
		{"missing", 8, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := r.Alive(tc.pid); got != tc.want {
				t.Errorf("Alive(%d) = %v, want %v", tc.pid, got, tc.want)
			}
		})
	}
	t.Run("real", func(t *testing.T) {
		if !Alive(os.Getpid()) {
			t.Error("this process is not alive")
		}
	})
}
