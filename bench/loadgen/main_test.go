package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/lmtpd/lmtpd/bench/internal/result"
)

// counter is a go-smtp backend that counts what it receives.
type counter struct {
	messages, rcpts atomic.Int64
	mu              sync.Mutex
	sizes           map[int64]int
}

func (c *counter) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return &countSession{c: c}, nil }

type countSession struct {
	c     *counter
	rcpts int
}

func (s *countSession) Reset()                                 { s.rcpts = 0 }
func (s *countSession) Logout() error                          { return nil }
func (s *countSession) Mail(string, *gosmtp.MailOptions) error { return nil }
func (s *countSession) Rcpt(string, *gosmtp.RcptOptions) error { s.rcpts++; return nil }
func (s *countSession) Data(r io.Reader) error {
	n, err := io.Copy(io.Discard, r)
	s.c.messages.Add(1)
	s.c.rcpts.Add(int64(s.rcpts))
	s.c.mu.Lock()
	s.c.sizes[n]++
	s.c.mu.Unlock()
	return err
}
func (s *countSession) LMTPData(r io.Reader, st gosmtp.StatusCollector) error { return s.Data(r) }

// goSMTPServer serves a counter over network ("tcp" or "unix").
func goSMTPServer(t *testing.T, network string, lmtp bool) (string, *counter) {
	t.Helper()
	c := &counter{sizes: map[int64]int{}}
	s := gosmtp.NewServer(c)
	s.LMTP = lmtp
	s.Domain = "test"
	s.ErrorLog = nopLogger{}
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "s.sock")
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	if network == "unix" {
		return "unix:" + l.Addr().String(), c
	}
	return l.Addr().String(), c
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

// runLoadgen runs the command and decodes its JSON result.
func runLoadgen(t *testing.T, args ...string) (int, *result.Result, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	if code == 2 {
		return code, nil, stderr.String()
	}
	var res result.Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("result %q: %v (stderr %s)", stdout.String(), err, stderr.String())
	}
	return code, &res, stderr.String()
}

func TestLoadAgainstGoSMTP(t *testing.T) {
	tests := []struct {
		name    string
		network string
		proto   string
		args    []string
		wantN   int64 // 0: at least one
		rcpts   int64
		size    int64
	}{
		{"lmtp tcp count", "tcp", "lmtp", []string{"-n", "50", "-c", "4", "-rcpts", "3", "-size", "2000"}, 50, 3, 2000},
		{"smtp tcp count", "tcp", "smtp", []string{"-n", "20", "-c", "2", "-rcpts", "2", "-size", "1024"}, 20, 2, 1024},
		{"lmtp unix duration", "unix", "lmtp", []string{"-duration", "200ms", "-c", "3"}, 0, 1, 1024},
		{"streamed message", "tcp", "lmtp", []string{"-n", "2", "-size", fmt.Sprint(prebuiltMax + 1000)}, 2, 1, prebuiltMax + 1000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr, srv := goSMTPServer(t, tc.network, tc.proto == "lmtp")
			args := append([]string{"-addr", addr, "-proto", tc.proto, "-pid", fmt.Sprint(os.Getpid()),
				"-server", "go-smtp", "-scenario", "s", "-run", "2"}, tc.args...)
			code, res, stderr := runLoadgen(t, args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if tc.wantN > 0 && res.Messages != tc.wantN || res.Messages == 0 {
				t.Errorf("Messages = %d, want %d", res.Messages, tc.wantN)
			}
			if got := srv.messages.Load(); got != res.Messages {
				t.Errorf("server received %d messages, loadgen counted %d", got, res.Messages)
			}
			if got := srv.rcpts.Load(); got != res.Messages*tc.rcpts {
				t.Errorf("server received %d recipients, want %d", got, res.Messages*tc.rcpts)
			}
			if srv.sizes[tc.size] != int(res.Messages) {
				t.Errorf("message sizes %v, want all %d", srv.sizes, tc.size)
			}
			if res.Server != "go-smtp" || res.Scenario != "s" || res.Run != 2 || res.Size != tc.size {
				t.Errorf("labels %+v", res)
			}
			if res.Elapsed <= 0 || res.MsgsPerSec <= 0 || res.PeakRSS <= 0 || res.ServerProcs < 1 || res.Errors != 0 {
				t.Errorf("measurements %+v", res)
			}
			if strings.Contains(tc.name, "duration") && res.Elapsed < 0.2 {
				t.Errorf("Elapsed %.3f, want >= 0.2", res.Elapsed)
			}
			if !strings.Contains(stderr, "msgs/s") {
				t.Errorf("summary %q", stderr)
			}
		})
	}
}

// scripted is a fake server whose replies the test chooses.
type scripted struct {
	rcpt  func(i int) string // reply to the i-th RCPT (from 1)
	final func(i int) string // i-th final reply after the dot
	// hang closes the connection after the message's final dot instead
	// of answering it. The message is read whole first: closing with the
	// client's bytes still unread (or arriving) makes the kernel send a
	// reset, and the client would see "connection reset by peer" or
	// "EOF" depending on timing.
	hang  bool
	conns atomic.Int64
}

func (s *scripted) serve(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			go s.handle(c)
		}
	}()
	return l.Addr().String()
}

func (s *scripted) handle(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	w := func(line string) { io.WriteString(c, line+"\r\n") }
	w("220 fake")
	rcpts := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		switch verb := strings.ToUpper(strings.Fields(line)[0]); verb {
		case "LHLO", "EHLO":
			w("250-fake\r\n250 PIPELINING")
		case "MAIL":
			rcpts = 0
			w("250 ok")
		case "RCPT":
			rcpts++
			w(s.rcpt(rcpts))
		case "DATA":
			w("354 go")
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			if s.hang {
				return
			}
			for i := 1; i <= rcpts; i++ {
				w(s.final(i))
			}
		case "QUIT":
			w("221 bye")
			return
		default:
			w("500 what")
		}
	}
}

func ok(int) string { return "250 ok" }

func TestReplyErrors(t *testing.T) {
	tests := []struct {
		name   string
		srv    *scripted
		want   string
		minCon int64
	}{
		{"rcpt rejected", &scripted{rcpt: func(i int) string {
			if i == 2 {
				return "550 5.1.1 no such user"
			}
			return "250 ok"
		}, final: ok}, `RCPT 2: unexpected reply "550 5.1.1 no such user"`, 2},
		{"final deferred", &scripted{rcpt: ok, final: func(i int) string {
			if i == 2 {
				return "452 4.3.1 full"
			}
			return "250 ok"
		}}, `final 2: unexpected reply "452 4.3.1 full"`, 2},
		{"malformed reply", &scripted{rcpt: func(int) string { return "hello" }, final: ok}, `RCPT 1: unexpected reply "hello"`, 2},
		{"connection lost", &scripted{rcpt: ok, final: ok, hang: true}, "EOF", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := tc.srv.serve(t)
			code, res, stderr := runLoadgen(t, "-addr", addr, "-n", "3", "-rcpts", "2")
			if code != 1 {
				t.Fatalf("exit %d, want 1: %s", code, stderr)
			}
			if res.Errors != 3 || res.Messages != 0 {
				t.Errorf("Errors %d, Messages %d: want 3 and 0", res.Errors, res.Messages)
			}
			if !strings.Contains(res.FirstError, tc.want) {
				t.Errorf("FirstError %q, want %q", res.FirstError, tc.want)
			}
			if !strings.Contains(stderr, "ERRORS") {
				t.Errorf("summary %q does not report the errors", stderr)
			}
			// A failed transaction costs its connection: a new one follows.
			if got := tc.srv.conns.Load(); got < tc.minCon {
				t.Errorf("%d connections, want at least %d", got, tc.minCon)
			}
		})
	}
}

func TestIdle(t *testing.T) {
	addr, _ := goSMTPServer(t, "tcp", true)
	out := filepath.Join(t.TempDir(), "results.jsonl")
	for i := 1; i <= 2; i++ {
		var stdout, stderr bytes.Buffer
		code := run([]string{"-addr", addr, "-idle", "50", "-hold", "10ms", "-dialers", "8",
			"-pid", fmt.Sprint(os.Getpid()), "-o", out, "-run", fmt.Sprint(i)}, &stdout, &stderr)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		if stdout.Len() != 0 {
			t.Errorf("stdout %q with -o", stdout.String())
		}
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	all, err := result.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 {
		t.Fatalf("%d results in %s, want 2 (appended)", len(all), out)
	}
	for _, r := range all {
		if r.Idle != 50 || r.Errors != 0 || r.RSS <= 0 || r.Scenario != "idle-50" || r.Messages != 0 {
			t.Errorf("result %+v", r)
		}
	}
}

func TestIdleRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "421 4.7.0 too many connections\r\n")
			c.Close()
		}
	}()
	defer l.Close()
	code, res, _ := runLoadgen(t, "-addr", l.Addr().String(), "-idle", "5", "-hold", "0s")
	if code != 1 || res.Idle != 0 || res.Errors != 5 || !strings.Contains(res.FirstError, "greeting") {
		t.Errorf("exit %d, result %+v", code, res)
	}
}

func TestSetupErrors(t *testing.T) {
	closed := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		return addr
	}()
	live, _ := goSMTPServer(t, "tcp", true)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no end", []string{"-addr", live}, "give -n or -duration"},
		{"bad proto", []string{"-proto", "esmtp", "-n", "1"}, `-proto "esmtp"`},
		{"zero concurrency", []string{"-c", "0", "-n", "1"}, "-c must be"},
		{"negative n", []string{"-n", "-1", "-duration", "1s"}, "must not be negative"},
		{"negative idle", []string{"-idle", "-1"}, "-idle must not be negative"},
		{"no dialers", []string{"-idle", "5", "-dialers", "0"}, "-dialers"},
		{"zero rcpts", []string{"-rcpts", "0", "-n", "1"}, "-rcpts"},
		{"zero timeout", []string{"-timeout", "0s", "-n", "1"}, "-timeout"},
		{"same recipient", []string{"-rcpts", "2", "-to", "a@b", "-n", "1"}, "-to needs %d"},
		{"extra argument", []string{"-n", "1", "x"}, "unexpected arguments"},
		{"unknown flag", []string{"-bogus"}, "flag provided but not defined"},
		{"tiny message", []string{"-addr", live, "-n", "1", "-size", "10"}, "smallest"},
		{"server down", []string{"-addr", closed, "-n", "1"}, "connection 1"},
		{"not ready", []string{"-addr", closed, "-n", "1", "-wait", "100ms"}, "not ready after 100ms"},
		{"server exited", []string{"-addr", closed, "-n", "1", "-wait", "1h", "-pid", "999999999"}, "server process 999999999 exited"},
		{"bad pid", []string{"-addr", live, "-n", "1", "-pid", "999999999"}, "server process"},
		{"bad pid idle", []string{"-addr", live, "-idle", "1", "-pid", "999999999"}, "server process"},
		{"bad output", []string{"-addr", live, "-n", "1", "-o", "/nonexistent/x.jsonl"}, "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runLoadgen(t, tc.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q does not contain %q", stderr, tc.want)
			}
		})
	}
	t.Run("help", func(t *testing.T) {
		var stderr bytes.Buffer
		if code := run([]string{"-h"}, io.Discard, &stderr); code != 0 || !strings.Contains(stderr.String(), "-rcpts") {
			t.Errorf("exit %d, usage %q", code, stderr.String())
		}
	})
}

// TestWaitReady: -wait tolerates a server that comes up late.
func TestWaitReady(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := &counter{sizes: map[int64]int{}}
	s := gosmtp.NewServer(c)
	s.LMTP = true
	s.ErrorLog = nopLogger{}
	go func() {
		time.Sleep(200 * time.Millisecond)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return
		}
		s.Serve(l)
	}()
	defer s.Close()
	code, res, stderr := runLoadgen(t, "-addr", addr, "-wait", "5s", "-n", "1")
	if code != 0 || res.Messages != 1 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}

func TestSummary(t *testing.T) {
	tests := []struct {
		name string
		res  result.Result
		want []string
	}{
		{"load", result.Result{Server: "lmtpd", Scenario: "1k-c8", Run: 1, Messages: 1000, Elapsed: 0.5, MsgsPerSec: 2000,
			ServerCPU: 0.25, CPUPer1000: 0.25, PeakRSS: 10 << 20}, []string{"lmtpd 1k-c8 run 1", "2000 msgs/s", "0.250s/1000 msgs", "10.0 MiB"}},
		{"idle", result.Result{Server: "s", Scenario: "idle", Idle: 10000, Elapsed: 2, RSS: 100 << 20, PeakRSS: 120 << 20},
			[]string{"10000 idle connections", "RSS 100.0 MiB (peak 120.0 MiB)"}},
		{"errors", result.Result{Errors: 3, FirstError: "RCPT 1: x"}, []string{"3 ERRORS, first: RCPT 1: x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := summary(&tc.res)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("summary %q lacks %q", got, w)
				}
			}
		})
	}
}
