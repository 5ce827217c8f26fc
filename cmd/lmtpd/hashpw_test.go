package main

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
	"time"
	"unsafe"

	"github.com/lmtpd/lmtpd/sasl"
)

func TestReadPasswordLine(t *testing.T) {
	tests := []struct {
		in, want string
		err      error
	}{
		{"secret\n", "secret", nil},
		{"secret\r\n", "secret", nil},
		{"no newline", "no newline", nil},
		{"first\nsecond\n", "first", nil},
		{" spaces kept \n", " spaces kept ", nil},
		{"\n", "", errEmptyPassword},
		{"", "", errEmptyPassword},
	}
	for _, tc := range tests {
		got, err := readPasswordLine(strings.NewReader(tc.in))
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("readPasswordLine(%q) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
	if _, err := readPasswordLine(iotest.ErrReader(errors.New("broken"))); err == nil || err.Error() != "broken" {
		t.Errorf("read error: %v", err)
	}
}

func TestPromptPassword(t *testing.T) {
	tests := []struct {
		name, typed, want string
		err               error
	}{
		{"twice the same", "s3cret\ns3cret\n", "s3cret", nil},
		{"mismatch", "s3cret\nother\n", "", errPasswordMismatch},
		{"empty", "\n", "", errEmptyPassword},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			master, slave := openPTY(t)
			if !isTerminal(slave) {
				t.Fatal("isTerminal is false on a pty")
			}
			var prompts strings.Builder
			type result struct {
				pw  string
				err error
			}
			done := make(chan result, 1)
			go func() {
				pw, err := promptPassword(slave, &prompts)
				done <- result{pw, err}
			}()
			// Type once the prompt waits with echo off.
			var st syscall.Termios
			waitEcho := func(on bool) {
				t.Helper()
				for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
					syscall.Syscall(syscall.SYS_IOCTL, slave.Fd(), ioctlGetTermios, uintptr(unsafe.Pointer(&st)))
					if (st.Lflag&syscall.ECHO != 0) == on {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("terminal echo not %v", on)
					}
				}
			}
			waitEcho(false)
			if _, err := master.Write([]byte(tc.typed)); err != nil {
				t.Fatal(err)
			}
			var r result
			select {
			case r = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("promptPassword did not return")
			}
			if r.pw != tc.want || !errors.Is(r.err, tc.err) {
				t.Errorf("got %q, %v; want %q, %v", r.pw, r.err, tc.want, tc.err)
			}
			if !strings.HasPrefix(prompts.String(), "Password: ") {
				t.Errorf("prompts %q", prompts.String())
			}
			// Echo is back on once promptPassword returned.
			waitEcho(true)
		})
	}
}

// tempInput returns a file holding content, positioned at its start.
func tempInput(t *testing.T, content string) *os.File {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "in")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	return f
}

// readAll returns what was written to f.
func readAll(t *testing.T, f *os.File) string {
	t.Helper()
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHashPasswordScheme(t *testing.T) {
	const pw = "correct horse battery"
	// Every strong scheme once (real costs: this is what admins get),
	// some spelled in lower case or by their alias.
	for _, scheme := range []string{"ARGON2ID", "argon2i", "bcrypt", "SHA512-CRYPT", "sha256-crypt", "PBKDF2"} {
		t.Run(scheme, func(t *testing.T) {
			var out strings.Builder
			stderr := tempInput(t, "")
			st := cmdHashPassword([]string{"-scheme", scheme}, tempInput(t, pw+"\n"), &out, stderr)
			if st != exOK {
				t.Fatalf("status %d, stderr %q", st, readAll(t, stderr))
			}
			line, ok := strings.CutSuffix(out.String(), "\n")
			if !ok || strings.Contains(line, "\n") {
				t.Fatalf("want one line, got %q", out.String())
			}
			want := strings.ToUpper(scheme)
			if want == "BCRYPT" {
				want = "BLF-CRYPT"
			}
			if name, err := sasl.HashScheme(line); err != nil || name != want || !strings.HasPrefix(line, "{"+want+"}") {
				t.Fatalf("%q: scheme %s, %v; want %s", line, name, err, want)
			}
			if ok, err := sasl.VerifyPassword(line, pw); !ok || err != nil {
				t.Errorf("the printed hash does not verify: %v, %v", ok, err)
			}
		})
	}
	t.Run("with -user", func(t *testing.T) {
		var out strings.Builder
		st := cmdHashPassword([]string{"-scheme", "SHA256-CRYPT", "-user", "bob"}, tempInput(t, pw+"\n"), &out, tempInput(t, ""))
		if st != exOK || !strings.HasPrefix(out.String(), "[[auth.user]]\nname = \"bob\"\npassword_hash = \"{SHA256-CRYPT}$5$rounds=100000$") {
			t.Fatalf("status %d, output %q", st, out.String())
		}
	})
	for _, tc := range []struct{ scheme, want string }{
		{"MD5-CRYPT", `unknown password scheme "MD5-CRYPT"`},
		{"SSHA", "too weak"},
		{"PLAIN", "too weak"},
		{"CRAM-MD5", "too weak"},
	} {
		t.Run("refused "+tc.scheme, func(t *testing.T) {
			var out strings.Builder
			stderr := tempInput(t, "")
			st := cmdHashPassword([]string{"-scheme", tc.scheme}, tempInput(t, pw+"\n"), &out, stderr)
			if st != exUsage || out.Len() != 0 || !strings.Contains(readAll(t, stderr), tc.want) {
				t.Fatalf("status %d, stdout %q, stderr %q; want %d and %q", st, out.String(), readAll(t, stderr), exUsage, tc.want)
			}
		})
	}
	t.Run("empty password", func(t *testing.T) {
		var out strings.Builder
		if st := cmdHashPassword([]string{"-scheme", "PBKDF2"}, tempInput(t, "\n"), &out, tempInput(t, "")); st != exDataErr || out.Len() != 0 {
			t.Fatalf("status %d, output %q", st, out.String())
		}
	})
}
