package wiretest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fatalTB records the first Fatal and stops the calling function, so
// that the harness's own failures can be tested.
type fatalTB struct {
	testing.TB
	msg string
}

type stopped struct{}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(stopped{})
}
func (f *fatalTB) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }

// fails runs fn with a fatalTB and returns its Fatal message ("" if none).
func fails(t *testing.T, fn func(tb testing.TB)) (msg string) {
	f := &fatalTB{TB: t}
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(stopped); !ok {
				panic(r)
			}
		}
		msg = f.msg
	}()
	fn(f)
	return ""
}

func writeScript(t *testing.T, text string) string {
	p := filepath.Join(t.TempDir(), "d.txt")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var testSyntax = Syntax{Kinds: []string{"Q:", "B:"}, Quoted: []string{"B:"}, Directives: []string{"mode"}, Transports: []string{"pipe", "unix"}}

func TestParse(t *testing.T) {
	p := writeScript(t, "# a comment\r\n@opt a=1 b\n@opt c=3\n@mode fast\n\nC: hello\nC:\nC! \"raw\\r\\n\"\nS: hi\r\nS~ h.*\nQ:\tx=y\nB: \"a\\nb\"\nCLOSED\n")
	s := Parse(t, p, testSyntax)
	if want := []string{"a=1", "b", "c=3"}; !reflect.DeepEqual(s.Opts, want) {
		t.Errorf("Opts %q, want %q", s.Opts, want)
	}
	if s.Directives["mode"] != "fast" {
		t.Errorf("Directives %q", s.Directives)
	}
	if want := []string{"pipe", "unix"}; !reflect.DeepEqual(s.Transports, want) {
		t.Errorf("Transports %q, want the default %q", s.Transports, want)
	}
	want := []Step{{"C:", "hello", 6}, {"C:", "", 7}, {"C!", "raw\r\n", 8}, {"S:", "hi", 9}, {"S~", "h.*", 10}, {"Q:", "x=y", 11}, {"B:", "a\nb", 12}, {"CLOSED", "", 13}}
	if !reflect.DeepEqual(s.Steps, want) {
		t.Errorf("Steps\n%+v\nwant\n%+v", s.Steps, want)
	}
	if s := Parse(t, writeScript(t, "@transports tcp,bytewise\n"), testSyntax); !reflect.DeepEqual(s.Transports, []string{"tcp", "bytewise"}) {
		t.Errorf("@transports: %q", s.Transports)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"unknown step", "C: a\nX: b\n", `d.txt:2: unknown step "X: b"`},
		{"unknown directive", "@speed 3\n", `d.txt:1: unknown directive "@speed 3"`},
		{"bad quote", "C! \"open\n", "d.txt:1: invalid syntax"},
		{"quoted kind of the test", "B: plain\n", "d.txt:1: invalid syntax"},
		{"no separator", "S:x\n", `d.txt:1: cannot parse "S:x"`},
		{"kind of another package", "N: 1\n", `d.txt:1: unknown step "N: 1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeScript(t, tc.text)
			msg := fails(t, func(tb testing.TB) { Parse(tb, p, testSyntax) })
			if !strings.Contains(msg, tc.want) {
				t.Errorf("failure %q, want it to contain %q", msg, tc.want)
			}
		})
	}
}

// echo answers every LF line with "ok " and the line, closes on "bye"
// without a reply and after its reply to "quit", and records the lines.
type echo struct{ lines chan string }

func (e *echo) Serve(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		e.ServeConn(c)
	}
}

func (e *echo) ServeConn(c net.Conn) {
	go func() {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return
			}
			l = strings.TrimSuffix(l, "\n")
			e.lines <- l
			if l == "bye" {
				return
			}
			if _, err := io.WriteString(c, "ok "+l+"\n"); err != nil || l == "quit" {
				return
			}
		}
	}()
}

func (e *echo) Close() error { return nil }

func TestPlay(t *testing.T) {
	for _, tr := range []string{"pipe", "bytewise", "unix", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			e := &echo{lines: make(chan string, 10)}
			s := Parse(t, writeScript(t, "C: one\nC: two\nS: ok one\nS~ ok t.o\nQ: 2\nC! \"bye\\n\"\nCLOSED\n"), testSyntax)
			var seen []string
			s.Play(t, Connect(t, e, tr), tr, LFLines, map[string]Hook{
				"Q:": func(r *Runner, st Step) {
					seen = append(seen, <-e.lines, <-e.lines)
					if r.Last() != "ok two" {
						r.Fail(st, "Last() = %q", r.Last())
					}
				},
			})
			if want := []string{"one", "two"}; !reflect.DeepEqual(seen, want) {
				t.Errorf("the server read %q, want %q", seen, want)
			}
			if l := <-e.lines; l != "bye" {
				t.Errorf("the server read %q, want bye", l)
			}
		})
	}
}

func TestPlayFailures(t *testing.T) {
	for _, tc := range []struct{ name, script, want string }{
		{"exact", "C: one\nS: ok two\n", "line 2: want \"ok two\", got \"ok one\" (open=true)\ntranscript:\nC: one\nS: ok one\n"},
		{"regexp", "C: one\nS~ ok t.*\n", "line 2: want /ok t.*/"},
		{"closed early", "C: bye\nS: ok bye\n", "line 2: want \"ok bye\", got \"\" (open=false)"},
		{"not closed", "C: one\nS: ok one\nC: quit\nCLOSED\n", "line 4: want the connection closed, got \"ok quit\\n\""},
		{"no hook", "C: one\nQ: x\n", "line 2: no hook runs Q: steps"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Parse(t, writeScript(t, tc.script), testSyntax)
			e := &echo{lines: make(chan string, 10)}
			msg := fails(t, func(tb testing.TB) {
				s.Play(tb, Connect(t, e, "pipe"), "pipe", LFLines, nil)
			})
			if !strings.Contains(msg, tc.want) {
				t.Errorf("failure %q, want it to contain %q", msg, tc.want)
			}
		})
	}
}

func TestFraming(t *testing.T) {
	for _, tc := range []struct {
		name  string
		f     Framing
		in    string
		reply string
		err   string
	}{
		{"LF", LFLines, "a line\n", "a line", ""},
		{"LF refuses CRLF", LFLines, "a line\r\n", "", "ends in CRLF"},
		{"CRLF", CRLFLines, "250 ok\r\n", "250 ok", ""},
		{"CRLF refuses LF", CRLFLines, "250 ok\n", "", "without CRLF"},
		{"partial line", LFLines, "half", "", `EOF (got "half")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.f.Reply(bufio.NewReader(strings.NewReader(tc.in)))
			if tc.err == "" && (err != nil || got != tc.reply) {
				t.Errorf("Reply = %q, %v; want %q", got, err, tc.reply)
			}
			if tc.err != "" && (err == nil || err == io.EOF || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("Reply error %v, want one containing %q", err, tc.err)
			}
		})
	}
	if _, err := LFLines.Reply(bufio.NewReader(strings.NewReader(""))); err != io.EOF {
		t.Errorf("at the end: %v, want io.EOF itself", err)
	}
	if got := string(CRLFLines.Request([]byte("a\r\n"), "b")); got != "a\r\nb\r\n" {
		t.Errorf("CRLF request %q", got)
	}
}

func TestFeed(t *testing.T) {
	e := &echo{lines: make(chan string, 10)}
	out := Feed(t, e.ServeConn, []byte("x\ny\nbye\n"))
	if string(out) != "ok x\nok y\n" {
		t.Errorf("Feed returned %q", out)
	}
}

// TestNotInProduct: the test-support packages stay out of the lmtpd
// binary.
func TestNotInProduct(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true: no go command on PATH: %v", err)
		}
		t.Skipf("SKIPPING: no go command on PATH: %v", err)
	}
	out, err := exec.Command(gobin, "list", "-deps", "github.com/lmtpd/lmtpd/cmd/lmtpd").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		switch p {
		case "github.com/lmtpd/lmtpd/internal/wiretest", "github.com/lmtpd/lmtpd/internal/pgtest", "github.com/lmtpd/lmtpd/internal/dovecottest",
			"github.com/lmtpd/lmtpd/internal/readmetest", "github.com/lmtpd/lmtpd/internal/testproc":
			t.Errorf("cmd/lmtpd depends on the test-support package %s", p)
		}
	}
	if !strings.Contains(string(out), "github.com/lmtpd/lmtpd/protocol\n") {
		t.Errorf("go list -deps did not list protocol; the check proves nothing:\n%s", out)
	}
}
