package pipe

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/lmtpd/lmtpd/protocol"
)

// script writes body into an executable /bin/sh script and returns its
// path. Tests that run scripts are not parallel: a script written while
// another test forks can fail with ETXTBSY.
func script(t testing.TB, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cmd")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// wantReply checks that err is a *protocol.Error with the given codes and a
// message containing msg.
func wantReply(t *testing.T, err error, code int, ec protocol.EnhancedCode, msg string) *protocol.Error {
	t.Helper()
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error = %v (%T), want *protocol.Error %d %v", err, err, code, ec)
	}
	if pe.Code != code || pe.EnhancedCode != ec {
		t.Errorf("reply %d %v %q, want %d %v", pe.Code, pe.EnhancedCode, pe.Message, code, ec)
	}
	if !strings.Contains(pe.Message, msg) {
		t.Errorf("message %q does not contain %q", pe.Message, msg)
	}
	if !isReplySafe(pe.Message) {
		t.Errorf("message %q is not one line of printable ASCII", pe.Message)
	}
	if pe.Err == nil {
		t.Errorf("no cause for the log")
	}
	return pe
}

func isReplySafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return len(s) < 400
}

// processGone reports whether pid no longer runs: it does not exist or is
// a zombie waiting for a parent that is not us. It polls for up to 3 seconds,
// since a killed process takes a moment to die.
func processGone(t *testing.T, pid int) bool {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); ; {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return true
		}
		// pid (comm) state ...: the state follows the last ')'.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'Z' {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readPID waits for a script to write a pid into file.
func readPID(t *testing.T, file string) int {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		b, err := os.ReadFile(file)
		if err == nil && bytes.HasSuffix(b, []byte("\n")) {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
	}
	t.Fatalf("no pid in %s", file)
	return 0
}

// killAtEnd kills pid when the test ends, for processes a test leaves
// behind on purpose.
func killAtEnd(t *testing.T, pid int) {
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
}

func TestRunOutcomes(t *testing.T) {
	tests := []struct {
		name     string
		argv     []string // or
		body     string   // a script
		code     int      // 0: success
		ec       protocol.EnhancedCode
		msg      string
		exitCode int
		output   string
	}{
		{name: "true", argv: []string{"/bin/true"}},
		{name: "true by name", argv: []string{"true"}},
		{name: "exit 0 ignores status output", body: "echo '5.1.1 no such user'; exit 0", output: "5.1.1 no such user"},
		{name: "false", argv: []string{"/bin/false"}, code: 554, ec: protocol.EnhancedCode{5, 3, 0},
			msg: "Delivery command failed: unknown mail system error (exit status 1)", exitCode: 1},
		{name: "exit 75", body: "exit 75", code: 451, ec: protocol.EnhancedCode{4, 3, 0},
			msg: "temporary failure (exit status 75, EX_TEMPFAIL)", exitCode: 75},
		{name: "exit 67", body: "exit 67", code: 550, ec: protocol.EnhancedCode{5, 1, 1},
			msg: "user unknown (exit status 67, EX_NOUSER)", exitCode: 67},
		{name: "exit 73 procmail", body: "exit 73", code: 550, ec: protocol.EnhancedCode{5, 2, 0}, msg: "EX_CANTCREAT", exitCode: 73},
		{name: "exit 78", body: "exit 78", code: 554, ec: protocol.EnhancedCode{5, 3, 5}, msg: "EX_CONFIG", exitCode: 78},
		{name: "over quota", body: "echo '4.2.2 over quota'; exit 75", code: 452, ec: protocol.EnhancedCode{4, 2, 2},
			msg: "over quota", exitCode: 75, output: "4.2.2 over quota"},
		{name: "no such user on stderr", body: "echo '5.1.1 no such user' >&2; exit 1", code: 550, ec: protocol.EnhancedCode{5, 1, 1},
			msg: "no such user", exitCode: 1, output: "5.1.1 no such user"},
		{name: "output beats temporary status", body: "echo '  5.7.1 spam refused'; echo detail; exit 75", code: 550,
			ec: protocol.EnhancedCode{5, 7, 1}, msg: "spam refused", exitCode: 75, output: "  5.7.1 spam refused\ndetail"},
		{name: "status without text", body: "echo 4.3.2; exit 1", code: 451, ec: protocol.EnhancedCode{4, 3, 2},
			msg: "Delivery command failed (exit status 1)", exitCode: 1, output: "4.3.2"},
		{name: "class 2 output ignored", body: "echo '2.0.0 ok'; exit 1", code: 554, ec: protocol.EnhancedCode{5, 3, 0},
			msg: "unknown mail system error (exit status 1): 2.0.0 ok", exitCode: 1, output: "2.0.0 ok"},
		{name: "output quoted on one line", body: "printf 'disk\\r\\non fire\\n\\tsecond\\033 line\\n'; exit 74", code: 554,
			ec: protocol.EnhancedCode{5, 3, 0}, msg: "input/output error (exit status 74, EX_IOERR): disk on fire second? line",
			exitCode: 74, output: "disk\non fire\n\tsecond? line"},
		{name: "killed by signal", body: "echo dying; kill -9 $$", code: 451, ec: protocol.EnhancedCode{4, 3, 0},
			msg: "Delivery command killed by signal 9 (killed): dying", exitCode: -1, output: "dying"},
		{name: "killed by SIGTERM", body: "kill -TERM $$", code: 451, ec: protocol.EnhancedCode{4, 3, 0},
			msg: "killed by signal 15 (terminated)", exitCode: -1},
		{name: "status output ignored after signal", body: "echo '5.1.1 no'; kill -9 $$", code: 451, ec: protocol.EnhancedCode{4, 3, 0},
			msg: "killed by signal 9 (killed): 5.1.1 no", exitCode: -1, output: "5.1.1 no"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			argv := tt.argv
			if argv == nil {
				argv = []string{script(t, tt.body)}
			}
			c := &Command{Argv: argv}
			res, err := c.Run(context.Background(), Vars{Recipient: "bob@example.test"}, strings.NewReader("Subject: t\r\n\r\nhi\r\n"))
			if tt.code == 0 {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
			} else {
				wantReply(t, err, tt.code, tt.ec, tt.msg)
			}
			if res.ExitCode != tt.exitCode {
				t.Errorf("ExitCode = %d, want %d", res.ExitCode, tt.exitCode)
			}
			if res.Output != tt.output {
				t.Errorf("Output = %q, want %q", res.Output, tt.output)
			}
			if res.OutputTotal < int64(len(tt.output)) {
				t.Errorf("OutputTotal = %d < %d", res.OutputTotal, len(tt.output))
			}
			if res.Duration <= 0 {
				t.Errorf("Duration = %v", res.Duration)
			}
		})
	}
}

func TestRunCauseIsExitError(t *testing.T) {
	_, err := (&Command{Argv: []string{"/bin/false"}}).Run(context.Background(), Vars{}, nil)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("error %v does not wrap the *exec.ExitError", err)
	}
	if !strings.Contains(err.Error(), "/bin/false") {
		t.Errorf("cause %q does not name the program", err)
	}
}

func TestRunStdin(t *testing.T) {
	msg := bytes.Repeat([]byte("Subject: x\r\n\r\nline\r\n"), 20000) // ~400 KiB, more than a pipe holds
	tests := []struct {
		name string
		in   io.Reader
		want []byte
	}{
		{"message", bytes.NewReader(msg), msg},
		{"one byte reads", iotest.OneByteReader(bytes.NewReader(msg[:5000])), msg[:5000]},
		{"file is copied, not passed", openFile(t, msg), msg},
		{"nil is empty", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			c := &Command{Argv: []string{script(t, `cat > "$1"`), out}}
			if _, err := c.Run(context.Background(), Vars{}, tt.in); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("command read %d bytes, want %d", len(got), len(tt.want))
			}
		})
	}
}

func openFile(t *testing.T, content []byte) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "spool")
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

var errSpool = errors.New("spool read failed")

func TestRunStdinReadError(t *testing.T) {
	in := func() io.Reader {
		return io.MultiReader(bytes.NewReader(make([]byte, 1000)), iotest.ErrReader(errSpool))
	}
	t.Run("exit 0 after truncated input", func(t *testing.T) {
		c := &Command{Argv: []string{script(t, "cat >/dev/null")}}
		res, err := c.Run(context.Background(), Vars{}, in())
		wantReply(t, err, 451, protocol.EnhancedCode{4, 3, 0}, msgReadError)
		if !errors.Is(err, errSpool) {
			t.Errorf("cause %v does not wrap the read error", err)
		}
		if res.ExitCode != 0 {
			t.Errorf("ExitCode = %d", res.ExitCode)
		}
	})
	t.Run("exit status decides otherwise", func(t *testing.T) {
		c := &Command{Argv: []string{script(t, "cat >/dev/null; exit 67")}}
		_, err := c.Run(context.Background(), Vars{}, in())
		wantReply(t, err, 550, protocol.EnhancedCode{5, 1, 1}, "user unknown")
	})
}

func TestRunIgnoresStdin(t *testing.T) {
	big := make([]byte, 10<<20)
	tests := []struct {
		name string
		body string
		code int
		ec   protocol.EnhancedCode
	}{
		{"exit 0 without reading", "exit 0", 0, protocol.EnhancedCode{}},
		{"exit 0 after reading the header", "head -c 100 >/dev/null; exit 0", 0, protocol.EnhancedCode{}},
		{"exit 67 without reading", "exit 67", 550, protocol.EnhancedCode{5, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Command{Argv: []string{script(t, tt.body)}}
			in := bytes.NewReader(big)
			_, err := c.Run(context.Background(), Vars{}, in)
			if tt.code == 0 {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
			} else {
				wantReply(t, err, tt.code, tt.ec, "")
			}
			if in.Len() == 0 {
				t.Errorf("all 10 MiB were consumed; the test does not test an unread input")
			}
		})
	}
}

func TestRunTimeoutKillsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	// The grandchild keeps the output pipe open, and the shell waits for it.
	// The limit leaves the shell time to start the grandchild even on a
	// loaded machine.
	c := &Command{Argv: []string{script(t, `sleep 1000 & echo $! > "$1"; wait`), pidFile}, Timeout: time.Second}
	start := time.Now()
	res, err := c.Run(context.Background(), Vars{}, strings.NewReader("x"))
	elapsed := time.Since(start)
	wantReply(t, err, 451, protocol.EnhancedCode{4, 3, 0}, "Delivery command timed out after 1s")
	if !errors.Is(err, ErrTimeout) {
		t.Errorf("error %v does not wrap ErrTimeout", err)
	}
	if elapsed < time.Second || elapsed > 3*time.Second {
		t.Errorf("Run took %v with a 1s time limit", elapsed)
	}
	if res.ExitCode != -1 {
		t.Errorf("ExitCode = %d, want -1", res.ExitCode)
	}
	pid := readPID(t, pidFile)
	killAtEnd(t, pid)
	if !processGone(t, pid) {
		t.Errorf("grandchild %d survived the time limit", pid)
	}
}

func TestRunTimeoutEscapedGrandchild(t *testing.T) {
	old := waitDelay
	waitDelay = 200 * time.Millisecond
	t.Cleanup(func() { waitDelay = old })
	pidFile := filepath.Join(t.TempDir(), "pid")
	// setsid puts the grandchild out of the process group: the kill cannot
	// reach it and it holds the output pipe; Run must still return.
	c := &Command{Argv: []string{script(t, `setsid sleep 1000 & echo $! > "$1"; wait`), pidFile}, Timeout: time.Second}
	start := time.Now()
	_, err := c.Run(context.Background(), Vars{}, nil)
	elapsed := time.Since(start)
	pid := readPID(t, pidFile)
	killAtEnd(t, pid)
	wantReply(t, err, 451, protocol.EnhancedCode{4, 3, 0}, "timed out after 1s")
	if elapsed > 3*time.Second {
		t.Errorf("Run took %v; want about time limit + wait delay (1.2s)", elapsed)
	}
	// The tree walk finds it: its parent, the shell, was still alive.
	if !processGone(t, pid) {
		t.Errorf("grandchild %d that setsid()ed survived the time limit", pid)
	}
}

// TestRunReapsEscapees: processes that leave the process group with
// setsid and are orphaned (double fork), so that neither the group nor the
// process tree leads to them, are killed all the same, on a time limit
// and after a clean exit, by the run token in their environment. Real
// scripts, real processes; the assertion is that none survives.
func TestRunReapsEscapees(t *testing.T) {
	if _, err := os.Stat("/proc/self/environ"); err != nil {
		t.Skip("no /proc: only the process group is killed on this system")
	}
	tests := []struct {
		name    string
		body    string
		timeout time.Duration
		wantErr bool
	}{
		// The subshell exits at once: sleep is orphaned, in a session of
		// its own, with its output closed.
		{"orphan in its own session, then hang", `(setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $! > "$1"); sleep 1000`, time.Second, true},
		{"orphan in its own session, then exit 0", `(setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $! > "$1"); exit 0`, 0, false},
		// A daemon that forks again after setsid.
		{"double fork after setsid, then exit 0", `setsid sh -c 'sleep 1000 & echo $! > "$1"' sh "$1" </dev/null >/dev/null 2>&1; exit 0`, 0, false},
		{"setsid child holding the output, exit 0", `setsid sleep 1000 & echo $! > "$1"; exit 0`, 0, false},
	}
	old := waitDelay
	waitDelay = 200 * time.Millisecond
	t.Cleanup(func() { waitDelay = old })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "pid")
			c := &Command{Argv: []string{script(t, tt.body), pidFile}, Timeout: tt.timeout}
			res, err := c.Run(context.Background(), Vars{}, nil)
			pid := readPID(t, pidFile)
			killAtEnd(t, pid)
			if tt.wantErr {
				wantReply(t, err, 451, protocol.EnhancedCode{4, 3, 0}, "timed out")
			} else if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if !processGone(t, pid) {
				t.Errorf("process %d survived the run", pid)
			}
			if !tt.wantErr && res.Leftover < 1 {
				t.Errorf("Leftover = %d, want at least 1", res.Leftover)
			}
		})
	}
}

func TestRunExitWithBackgroundChild(t *testing.T) {
	old := waitDelay
	waitDelay = 200 * time.Millisecond
	t.Cleanup(func() { waitDelay = old })
	pidFile := filepath.Join(t.TempDir(), "pid")
	c := &Command{Argv: []string{script(t, `sleep 1000 & echo $! > "$1"; echo delivered; exit 0`), pidFile}}
	start := time.Now()
	res, err := c.Run(context.Background(), Vars{}, nil)
	elapsed := time.Since(start)
	pid := readPID(t, pidFile)
	killAtEnd(t, pid)
	if err != nil {
		t.Fatalf("Run: %v; exit status 0 is delivered even with a child holding the output", err)
	}
	if !processGone(t, pid) {
		t.Errorf("background child %d outlived the command", pid)
	}
	if res.Output != "delivered" {
		t.Errorf("Output = %q", res.Output)
	}
	if elapsed > 200*time.Millisecond+2*time.Second {
		t.Errorf("Run took %v; want about the wait delay (200ms)", elapsed)
	}
}

func TestRunContextCancel(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	c := &Command{Argv: []string{script(t, `sleep 1000 & echo $! > "$1"; wait`), pidFile}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		res Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := c.Run(ctx, Vars{}, nil)
		done <- result{res, err}
	}()
	pid := readPID(t, pidFile)
	killAtEnd(t, pid)
	cancel()
	select {
	case r := <-done:
		wantReply(t, r.err, 451, protocol.EnhancedCode{4, 3, 0}, msgInterrupted)
		if !errors.Is(r.err, context.Canceled) {
			t.Errorf("error %v does not wrap context.Canceled", r.err)
		}
		if errors.Is(r.err, ErrTimeout) {
			t.Errorf("a cancellation is reported as a timeout: %v", r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if !processGone(t, pid) {
		t.Errorf("grandchild %d survived the cancellation", pid)
	}
}

func TestRunContextDoneBeforeStart(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	c := &Command{Argv: []string{script(t, `touch "$1"`), marker}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Run(ctx, Vars{}, nil)
	wantReply(t, err, 451, protocol.EnhancedCode{4, 3, 0}, msgInterrupted)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v does not wrap context.Canceled", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command ran")
	}
}

func TestRunLargeOutput(t *testing.T) {
	const total = 16 << 20
	body := "yes 0123456789abcdef | head -c " + strconv.Itoa(total) + "; exit 74"
	for _, max := range []int{0, 100} {
		t.Run("MaxOutput="+strconv.Itoa(max), func(t *testing.T) {
			c := &Command{Argv: []string{script(t, body)}, MaxOutput: max}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			res, err := c.Run(context.Background(), Vars{}, nil)
			runtime.ReadMemStats(&after)
			pe := wantReply(t, err, 554, protocol.EnhancedCode{5, 3, 0}, "EX_IOERR")
			keep := max
			if keep == 0 {
				keep = DefaultMaxOutput
			}
			if len(res.Output) > keep || len(res.Output) < keep-20 {
				t.Errorf("len(Output) = %d, want about %d", len(res.Output), keep)
			}
			if res.OutputTotal != total {
				t.Errorf("OutputTotal = %d, want %d", res.OutputTotal, total)
			}
			if len(pe.Message) > 100+maxReplyOutput {
				t.Errorf("reply message is %d bytes", len(pe.Message))
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
				t.Errorf("16 MiB of output allocated %d bytes", alloc)
			}
		})
	}
}

// readArgs returns the arguments a script written by argsScript received.
func argsScript(t *testing.T) (path, out string) {
	out = filepath.Join(t.TempDir(), "args")
	return script(t, `out=$1; shift; for a; do printf '%s\0' "$a"; done > "$out"`), out
}

func readArgs(t *testing.T, out string) []string {
	t.Helper()
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}

func TestRunArguments(t *testing.T) {
	v := Vars{
		Sender:            "alice@example.org",
		Recipient:         "\"a b \\\"c\\\" $(rm -rf /) `id`;|&\n\r\x00\t\xff\"@example.test",
		OriginalRecipient: "jürgen@bücher.example",
		User:              "a b",
		Detail:            "",
		Domain:            "example.test",
		Size:              4321,
		ClientAddress:     "2001:db8::1",
		ClientHelo:        "helo\r\nRCPT TO:<x>",
		SessionID:         "S-1",
	}
	path, out := argsScript(t)
	c := &Command{Argv: []string{path, out, "{recipient}", "-f", "{sender}", "--orig={original_recipient}",
		"{user}+{detail}@{domain}", "{size}", "{client_address}", "{client_helo}", "{session}", "{detail}", "{{x}}", "$HOME", "*"}}
	if _, err := c.Run(context.Background(), v, nil); err != nil {
		t.Fatal(err)
	}
	want := []string{"\"a b \\\"c\\\" $(rm -rf /) `id`;|&_____\"@example.test", "-f", "alice@example.org",
		"--orig=jürgen@bücher.example", "a b+@example.test", "4321", "2001:db8::1", "helo__RCPT TO:<x>", "S-1", "", "{x}", "$HOME", "*"}
	if got := readArgs(t, out); !slices.Equal(got, want) {
		t.Errorf("arguments\n got %q\nwant %q", got, want)
	}
}

func TestRunMulti(t *testing.T) {
	v := Vars{Sender: "alice@example.org", Domain: "example.test"}
	t.Run("one argument per recipient", func(t *testing.T) {
		path, out := argsScript(t)
		c := &Command{Argv: []string{path, out, "-f", "{sender}", "--", "{recipients}", "{domain}"}}
		rcpts := []string{"a@example.test", "b c@example.test", "d\n@example.test"}
		if _, err := c.RunMulti(context.Background(), v, rcpts, nil); err != nil {
			t.Fatal(err)
		}
		want := []string{"-f", "alice@example.org", "--", "a@example.test", "b c@example.test", "d_@example.test", "example.test"}
		if got := readArgs(t, out); !slices.Equal(got, want) {
			t.Errorf("arguments %q, want %q", got, want)
		}
	})
	t.Run("one status for all", func(t *testing.T) {
		c := &Command{Argv: []string{script(t, "exit 75"), "{recipients}"}}
		_, err := c.RunMulti(context.Background(), v, []string{"a@x", "b@x"}, nil)
		wantReply(t, err, 451, protocol.EnhancedCode{4, 3, 0}, "EX_TEMPFAIL")
	})
	t.Run("Run expands recipients to the one recipient", func(t *testing.T) {
		path, out := argsScript(t)
		c := &Command{Argv: []string{path, out, "{recipients}"}}
		if _, err := c.Run(context.Background(), Vars{Recipient: "r@x"}, nil); err != nil {
			t.Fatal(err)
		}
		if got := readArgs(t, out); !slices.Equal(got, []string{"r@x"}) {
			t.Errorf("arguments %q", got)
		}
	})
	t.Run("no recipients", func(t *testing.T) {
		c := &Command{Argv: []string{"/bin/true", "{recipients}"}}
		res, err := c.RunMulti(context.Background(), v, nil, nil)
		wantReply(t, err, 451, protocol.EnhancedCode{4, 3, 0}, "no recipients")
		if res.ExitCode != -1 {
			t.Errorf("ExitCode = %d", res.ExitCode)
		}
	})
	t.Run("dash recipient refused", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "ran")
		c := &Command{Argv: []string{script(t, `touch "$1"`), marker, "{recipients}"}}
		_, err := c.RunMulti(context.Background(), v, []string{"a@x", "-oQ/tmp@x"}, nil)
		wantReply(t, err, 550, protocol.EnhancedCode{5, 1, 3}, "recipient address that starts with '-'")
		if _, err := os.Stat(marker); err == nil {
			t.Error("the command ran")
		}
	})
}

func TestRunLeadingDash(t *testing.T) {
	tests := []struct {
		name  string
		arg   string
		v     Vars
		allow bool
		code  int
		ec    protocol.EnhancedCode
		want  string // the argument when accepted
	}{
		{name: "recipient", arg: "{recipient}", v: Vars{Recipient: "-oQ/tmp/x@example.test"}, code: 550, ec: protocol.EnhancedCode{5, 1, 3}},
		{name: "sender", arg: "{sender}", v: Vars{Sender: "-be"}, code: 550, ec: protocol.EnhancedCode{5, 1, 7}},
		{name: "helo", arg: "{client_helo}", v: Vars{ClientHelo: "-x"}, code: 554, ec: protocol.EnhancedCode{5, 5, 4}},
		{name: "option value", arg: "--to={recipient}", v: Vars{Recipient: "-r@x"}, want: "--to=-r@x"},
		{name: "allowed", arg: "{recipient}", v: Vars{Recipient: "-r@x"}, allow: true, want: "-r@x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, out := argsScript(t)
			c := &Command{Argv: []string{path, out, tt.arg}, AllowLeadingDash: tt.allow}
			_, err := c.Run(context.Background(), tt.v, nil)
			if tt.code != 0 {
				wantReply(t, err, tt.code, tt.ec, "starts with '-'")
				if _, err := os.Stat(out); err == nil {
					t.Error("the command ran")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := readArgs(t, out); !slices.Equal(got, []string{tt.want}) {
				t.Errorf("arguments %q, want %q", got, tt.want)
			}
		})
	}
}

// envOf runs /usr/bin/env directly (no shell, which would add variables of
// its own) and returns the environment it printed, sorted.
func envOf(t *testing.T, c *Command, v Vars) []string {
	t.Helper()
	res, err := c.Run(context.Background(), v, nil)
	if err != nil {
		t.Fatal(err)
	}
	env := strings.Split(res.Output, "\n")
	slices.Sort(env)
	// The run token is random; check its form and leave it out.
	i := slices.IndexFunc(env, func(s string) bool { return strings.HasPrefix(s, runTokenVar+"=") })
	if i < 0 || len(env[i]) != len(runTokenVar)+1+32 {
		t.Errorf("environment %q lacks a %s token", env, runTokenVar)
	} else {
		env = slices.Delete(env, i, i+1)
	}
	return env
}

func TestRunEnvironment(t *testing.T) {
	t.Setenv("LMTPD_SECRET", "must not leak")
	v := Vars{
		Sender: "alice@example.org", Recipient: "bob+lists@example.test", OriginalRecipient: "Bob+Lists@Example.Test",
		User: "bob", Detail: "lists", Domain: "example.test", Size: 99, ClientAddress: "192.0.2.1",
		ClientHelo: "evil\nINJECTED=1", SessionID: "S2",
	}
	got := envOf(t, &Command{Argv: []string{"/usr/bin/env"}}, v)
	want := []string{
		"CLIENT_ADDRESS=192.0.2.1", "CLIENT_HELO=evil_INJECTED=1", "DOMAIN=example.test", "EXTENSION=lists",
		"ORIGINAL_RECIPIENT=Bob+Lists@Example.Test", "PATH=/usr/bin:/bin", "RECIPIENT=bob+lists@example.test",
		"SENDER=alice@example.org", "SESSION_ID=S2", "SIZE=99", "USER=bob",
	}
	if !slices.Equal(got, want) {
		t.Errorf("environment\n got %q\nwant %q", got, want)
	}
}

func TestRunDir(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, dir, want string
	}{
		{"default", "", "/"},
		{"set", dir, dir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := (&Command{Argv: []string{"/bin/pwd"}, Dir: tt.dir}).Run(context.Background(), Vars{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Output != tt.want {
				t.Errorf("working directory %q, want %q", res.Output, tt.want)
			}
		})
	}
}

func TestRunStartFailures(t *testing.T) {
	dir := t.TempDir()
	badInterp := filepath.Join(dir, "badinterp")
	if err := os.WriteFile(badInterp, []byte("#!/nonexistent/interpreter\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		c    Command
		v    Vars
		ec   protocol.EnhancedCode
		msg  string
	}{
		{"no program", Command{Argv: []string{filepath.Join(dir, "missing")}}, Vars{}, protocol.EnhancedCode{4, 3, 5}, msgMisconfigured},
		{"not in search path", Command{Argv: []string{"no-such-program-lmtpd"}}, Vars{}, protocol.EnhancedCode{4, 3, 5}, msgMisconfigured},
		{"empty argv", Command{}, Vars{}, protocol.EnhancedCode{4, 3, 5}, msgMisconfigured},
		{"bad placeholder", Command{Argv: []string{"/bin/true", "{rcpt}"}}, Vars{}, protocol.EnhancedCode{4, 3, 5}, msgMisconfigured},
		{"bad interpreter", Command{Argv: []string{badInterp}}, Vars{}, protocol.EnhancedCode{4, 3, 5}, msgMisconfigured},
		{"missing directory", Command{Argv: []string{"/bin/true"}, Dir: filepath.Join(dir, "gone")}, Vars{}, protocol.EnhancedCode{4, 3, 5}, msgMisconfigured},
		// execve fails with E2BIG for one argument over MAX_ARG_STRLEN
		// (128 KiB on Linux): not a configuration error.
		{"argument too long", Command{Argv: []string{"/bin/true", "{recipient}"}}, Vars{Recipient: strings.Repeat("x", 200<<10)},
			protocol.EnhancedCode{4, 3, 0}, msgNoStart},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := tt.c.Run(context.Background(), tt.v, nil)
			wantReply(t, err, 451, tt.ec, tt.msg)
			if res.ExitCode != -1 {
				t.Errorf("ExitCode = %d, want -1", res.ExitCode)
			}
		})
	}
}

func TestStartErrorClassification(t *testing.T) {
	tests := []struct {
		err  error
		want protocol.EnhancedCode
	}{
		{&os.PathError{Op: "fork/exec", Path: "/x", Err: syscall.ENOENT}, protocol.EnhancedCode{4, 3, 5}},
		{&os.PathError{Op: "fork/exec", Path: "/x", Err: syscall.EACCES}, protocol.EnhancedCode{4, 3, 5}},
		{&os.PathError{Op: "fork/exec", Path: "/x", Err: syscall.EPERM}, protocol.EnhancedCode{4, 3, 5}},
		{&os.PathError{Op: "fork/exec", Path: "/x", Err: syscall.ENOEXEC}, protocol.EnhancedCode{4, 3, 5}},
		{&os.PathError{Op: "chdir", Path: "/x", Err: syscall.ENOTDIR}, protocol.EnhancedCode{4, 3, 5}},
		{&os.PathError{Op: "fork/exec", Path: "/x", Err: syscall.E2BIG}, protocol.EnhancedCode{4, 3, 0}},
		{&os.PathError{Op: "fork/exec", Path: "/x", Err: syscall.EAGAIN}, protocol.EnhancedCode{4, 3, 0}},
		{&os.PathError{Op: "fork/exec", Path: "/x", Err: syscall.ENOMEM}, protocol.EnhancedCode{4, 3, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			e := startError("/x", tt.err)
			if e.Code != 451 || e.EnhancedCode != tt.want || !errors.Is(e, tt.err.(*os.PathError).Err) {
				t.Errorf("startError = %d %v (%v), want 451 %v", e.Code, e.EnhancedCode, e.Err, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "notexec")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		c       Command
		wantErr string
	}{
		{"absolute", Command{Argv: []string{"/bin/true"}}, ""},
		{"by name", Command{Argv: []string{"cat"}}, ""},
		{"full", Command{Argv: []string{"/bin/cat", "-f", "{sender}", "--", "{recipients}"}, Timeout: time.Second,
			MaxOutput: 10, Dir: dir}, ""},
		{"empty argv", Command{}, "empty argv"},
		{"empty program", Command{Argv: []string{""}}, "empty program name"},
		{"relative path", Command{Argv: []string{"bin/true"}}, "a path must be absolute"},
		{"dot path", Command{Argv: []string{"./true"}}, "a path must be absolute"},
		{"not found", Command{Argv: []string{"no-such-program-lmtpd"}}, "not found in /usr/bin:/bin"},
		{"missing", Command{Argv: []string{filepath.Join(dir, "missing")}}, "no such file"},
		{"directory", Command{Argv: []string{dir}}, "not a regular file"},
		{"not executable", Command{Argv: []string{notExec}}, "not executable"},
		{"placeholder in program", Command{Argv: []string{"/usr/bin/{user}"}}, "placeholders are not allowed in argv[0]"},
		{"NUL in program", Command{Argv: []string{"/bin/true\x00"}}, "NUL"},
		{"unknown placeholder", Command{Argv: []string{"/bin/true", "{recipient}", "{rcpt}"}}, `argument 2 "{rcpt}": unknown placeholder`},
		{"unbalanced", Command{Argv: []string{"/bin/true", "a}"}}, "unmatched }"},
		{"partial recipients", Command{Argv: []string{"/bin/true", "x{recipients}"}}, "whole argument"},
		{"negative timeout", Command{Argv: []string{"/bin/true"}, Timeout: -1}, "negative timeout"},
		{"negative max output", Command{Argv: []string{"/bin/true"}, MaxOutput: -1}, "negative max output"},
		{"relative dir", Command{Argv: []string{"/bin/true"}, Dir: "tmp"}, "not an absolute path"},
		{"missing dir", Command{Argv: []string{"/bin/true"}, Dir: filepath.Join(dir, "gone")}, "no such file"},
		{"dir is a file", Command{Argv: []string{"/bin/true"}, Dir: notExec}, "not a directory"},
		{"group without user", Command{Argv: []string{"/bin/true"}, Group: "nogroup"}, "without a user"},
		{"unknown user", Command{Argv: []string{"/bin/true"}, User: "no-such-user-lmtpd"}, "unknown user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.c.User != "" && os.Geteuid() != 0 {
				t.Skip("run-as needs root")
			}
			err := tt.c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestRunAsNotRoot(t *testing.T) {
	old := geteuid
	geteuid = func() int { return 1000 }
	t.Cleanup(func() { geteuid = old })
	c := &Command{Argv: []string{"/bin/true"}, User: "nobody"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "needs lmtpd to run as root") {
		t.Errorf("Validate error = %v", err)
	}
	_, err := c.Run(context.Background(), Vars{}, nil)
	pe := wantReply(t, err, 451, protocol.EnhancedCode{4, 3, 5}, msgMisconfigured)
	if !strings.Contains(pe.Err.Error(), "needs lmtpd to run as root") {
		t.Errorf("cause %v", pe.Err)
	}
}

func TestRunAs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("run-as needs root")
	}
	tests := []struct {
		name, user, group string
		wantID            string
	}{
		{"user and group", "nobody", "nogroup", "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)"},
		{"primary group", "nobody", "", "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)"},
		{"numeric", "65534", "65534", "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)"},
		{"other group", "nobody", "daemon", "uid=65534(nobody) gid=1(daemon) groups=1(daemon)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Command{Argv: []string{"/usr/bin/id"}, User: tt.user, Group: tt.group}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			res, err := c.Run(context.Background(), Vars{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Output != tt.wantID {
				t.Errorf("id = %q, want %q", res.Output, tt.wantID)
			}
		})
	}
	t.Run("environment", func(t *testing.T) {
		got := envOf(t, &Command{Argv: []string{"/usr/bin/env"}, User: "nobody"}, Vars{User: "bob"})
		for _, want := range []string{"HOME=/nonexistent", "LOGNAME=nobody", "SHELL=/usr/sbin/nologin", "USER=bob", "PATH=/usr/bin:/bin"} {
			if !slices.Contains(got, want) {
				t.Errorf("environment %q lacks %q", got, want)
			}
		}
		if len(got) != 14 { // the run token left out by envOf
			t.Errorf("environment has %d variables, want 14: %q", len(got), got)
		}
	})
	t.Run("unknown group", func(t *testing.T) {
		c := &Command{Argv: []string{"/bin/true"}, User: "nobody", Group: "no-such-group-lmtpd"}
		_, err := c.Run(context.Background(), Vars{}, nil)
		wantReply(t, err, 451, protocol.EnhancedCode{4, 3, 5}, msgMisconfigured)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "unknown group") {
			t.Errorf("Validate error = %v", err)
		}
	})
	t.Run("no shell entry", func(t *testing.T) {
		old := passwdFile
		passwdFile = filepath.Join(t.TempDir(), "missing")
		t.Cleanup(func() { passwdFile = old })
		got := envOf(t, &Command{Argv: []string{"/usr/bin/env"}, User: "nobody"}, Vars{})
		for _, kv := range got {
			if strings.HasPrefix(kv, "SHELL=") {
				t.Errorf("SHELL guessed: %q", kv)
			}
		}
	})
}

func BenchmarkRunTrue(b *testing.B) {
	c := &Command{Argv: []string{"/bin/true"}}
	msg := bytes.Repeat([]byte("x"), 1024)
	v := Vars{Sender: "a@example.org", Recipient: "b@example.test", User: "b", Domain: "example.test", Size: 1024}
	for b.Loop() {
		if _, err := c.Run(context.Background(), v, bytes.NewReader(msg)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExecTrueBaseline is os/exec alone, for comparison with
// BenchmarkRunTrue: the difference is this package's overhead.
func BenchmarkExecTrueBaseline(b *testing.B) {
	msg := bytes.Repeat([]byte("x"), 1024)
	for b.Loop() {
		cmd := exec.Command("/bin/true")
		cmd.Stdin = bytes.NewReader(msg)
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
	}
}
