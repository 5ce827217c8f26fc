//go:build linux

package peers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// clientSetup is lmtpd with STARTTLS and optional AUTH on its SMTP
// listener, the certificate its clients trust, and one login.
type clientSetup struct {
	d          *daemon
	cert       testCert
	user, pass string
}

func newClientSetup(t *testing.T) clientSetup {
	t.Helper()
	s := clientSetup{user: "alice@example.test", pass: "correct horse battery staple"}
	s.cert = newTestCert(t, shortTempDir(t))
	s.d = newDaemon(t, daemonOptions{
		SMTP: "tls = \"starttls\"\nauth = \"optional\"\n",
		Extra: fmt.Sprintf("[tls]\ncert_file = %q\nkey_file = %q\n\n%s\n", s.cert.CertFile, s.cert.KeyFile,
			authUser(t, s.user, s.pass)),
		Domains: testDomains(""),
	})
	return s
}

// receivedWith returns the "with" keyword of lmtpd's Received field in
// the file.
func receivedWith(t testing.TB, file string) string {
	t.Helper()
	header, _, _ := splitMessage(readFile(t, file))
	for _, f := range headerFields(header) {
		if fieldName(f) != "received" || !strings.Contains(f, "(lmtpd)") {
			continue
		}
		_, after, ok := strings.Cut(f, " with ")
		if !ok {
			break
		}
		return strings.Fields(after)[0]
	}
	t.Fatalf("%s: no Received field by lmtpd with a protocol", file)
	return ""
}

// TestSwaks drives the SMTP listener with swaks: plain, STARTTLS, and AUTH
// PLAIN and LOGIN over STARTTLS, and a wrong password.
func TestSwaks(t *testing.T) {
	swaks := requirePeer(t, "swaks")
	s := newClientSetup(t)
	tlsOK := exec.Command("perl", "-MNet::SSLeay", "-e", "1").Run() == nil

	tests := []struct {
		name     string
		args     []string
		tls      bool
		wantWith string // "" when the message must be refused
		wantOut  string // in swaks' transcript
	}{
		{name: "plain", wantWith: "ESMTP", wantOut: "<-  250 2.0.0"},
		{name: "starttls", args: []string{"--tls"}, tls: true, wantWith: "ESMTPS", wantOut: "<~  250 2.0.0"},
		{name: "auth-plain", args: []string{"--tls", "--auth", "PLAIN", "--auth-user", s.user, "--auth-password", s.pass}, tls: true, wantWith: "ESMTPSA", wantOut: "235 2.7.0"},
		{name: "auth-login", args: []string{"--tls", "--auth", "LOGIN", "--auth-user", s.user, "--auth-password", s.pass}, tls: true, wantWith: "ESMTPSA", wantOut: "235 2.7.0"},
		{name: "auth-wrong-password", args: []string{"--tls", "--auth", "PLAIN", "--auth-user", s.user, "--auth-password", "wrong"}, tls: true, wantOut: "535 5.7.8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.tls && !tlsOK {
				missingPeer(t, "swaks needs Net::SSLeay for STARTTLS (apt-get install libnet-ssleay-perl)")
			}
			id := "swaks-" + tc.name
			m := newMessage(id, "sender@example.test", "bob@example.test", 2000)
			host, port, _ := net.SplitHostPort(s.d.SMTPAddr)
			args := append([]string{
				"--server", host, "--port", port, "--helo", "client.example.test",
				"--from", "sender@example.test", "--to", "bob@example.test",
				"--data", "-", "--timeout", "30",
			}, tc.args...)
			cmd := exec.Command(swaks, args...)
			// swaks ends the data with CRLF "." CRLF after a line break
			// of its own: give it the message without its last one.
			cmd.Stdin = bytes.NewReader(bytes.TrimSuffix(m.Stored, []byte("\n")))
			out, err := cmd.CombinedOutput()
			if !strings.Contains(string(out), tc.wantOut) {
				t.Errorf("swaks output lacks %q", tc.wantOut)
			}
			box := s.d.mailbox("bob@example.test")
			if tc.wantWith == "" {
				if err == nil {
					t.Fatalf("swaks succeeded, want a refusal:\n%s", out)
				}
				for _, f := range newFiles(t, box) {
					if bytes.Contains(readFile(t, f), []byte("X-Test-ID: "+id+"\n")) {
						t.Fatalf("refused message was delivered: %s", f)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("swaks %v: %v\n%s", args, err, out)
			}
			f := findMessage(t, box, id)
			checkDelivered(t, f, m)
			if got := receivedWith(t, f); got != tc.wantWith {
				t.Errorf("Received ... with %s, want %s", got, tc.wantWith)
			}
			if t.Failed() {
				t.Logf("swaks transcript:\n%s", out)
			}
		})
	}
}

// findMessage waits for the file in dir/new whose X-Test-ID is id.
func findMessage(t testing.TB, dir, id string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	want := []byte("\nX-Test-ID: " + id + "\n")
	for {
		for _, f := range newFiles(t, dir) {
			if bytes.Contains(readFile(t, f), want) {
				return f
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message %s in %s/new", id, dir)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// smtplibResult is what testdata/smtplib_client.py prints.
type smtplibResult struct {
	Rcpt [][2]any `json:"rcpt"`
	Data [][2]any `json:"data"`
	TLS  bool     `json:"tls"`
	Auth []any    `json:"auth"`
}

// codes returns the reply codes of a list of [code, text] pairs.
func codes(rs [][2]any) []int {
	var out []int
	for _, r := range rs {
		n, _ := r[0].(float64)
		out = append(out, int(n))
	}
	return out
}

// runSmtplib runs testdata/smtplib_client.py with the request.
func runSmtplib(t *testing.T, python string, req map[string]any) smtplibResult {
	t.Helper()
	in, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, filepath.Join("testdata", "smtplib_client.py"))
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("smtplib_client.py: %v\n%s", err, stderr.Bytes())
	}
	var res smtplibResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("smtplib_client.py printed %q: %v", out, err)
	}
	return res
}

// TestPythonSmtplib sends with smtplib.SMTP (STARTTLS and login) and with
// smtplib.LMTP over the unix socket, reading one reply per recipient.
func TestPythonSmtplib(t *testing.T) {
	python := requirePeer(t, "python3")
	s := newClientSetup(t)
	dir := shortTempDir(t)

	t.Run("smtp-starttls-login", func(t *testing.T) {
		m := newMessage("py-smtp", s.user, "carol@example.test", 5000)
		msgFile := filepath.Join(dir, "smtp.eml")
		if err := os.WriteFile(msgFile, m.Wire, 0o644); err != nil {
			t.Fatal(err)
		}
		host, port, _ := net.SplitHostPort(s.d.SMTPAddr)
		res := runSmtplib(t, python, map[string]any{
			"mode": "smtp", "host": host, "port": port, "starttls": true, "cafile": s.cert.CertFile,
			"user": s.user, "password": s.pass, "sender": s.user, "rcpts": []string{"carol@example.test"}, "message": msgFile,
		})
		if !res.TLS || len(res.Auth) == 0 || res.Auth[0].(float64) != 235 {
			t.Fatalf("TLS %v, login reply %v; want TLS and 235", res.TLS, res.Auth)
		}
		if got := codes(res.Data); len(got) != 1 || got[0] != 250 {
			t.Fatalf("data replies %v, want one 250", res.Data)
		}
		f := findMessage(t, s.d.mailbox("carol@example.test"), m.ID)
		checkDelivered(t, f, m)
		if got := receivedWith(t, f); got != "ESMTPSA" {
			t.Errorf("Received ... with %s, want ESMTPSA", got)
		}
	})

	t.Run("lmtp-per-recipient-replies", func(t *testing.T) {
		m := newMessage("py-lmtp", "sender@example.test", "alice@example.test", 5000)
		msgFile := filepath.Join(dir, "lmtp.eml")
		if err := os.WriteFile(msgFile, m.Wire, 0o644); err != nil {
			t.Fatal(err)
		}
		rcpts := []string{"alice@example.test", "nobody@example.test", "defer@example.test", "bob@example.test", "fail@example.test"}
		res := runSmtplib(t, python, map[string]any{
			"mode": "lmtp", "host": s.d.Socket, "sender": "sender@example.test", "rcpts": rcpts, "message": msgFile,
		})
		if got, want := fmt.Sprint(codes(res.Rcpt)), "[250 550 250 250 250]"; got != want {
			t.Fatalf("RCPT replies %v, want codes %s", res.Rcpt, want)
		}
		// One reply per accepted recipient, in RCPT order (RFC 2033
		// section 4.2): alice, defer, bob, fail.
		if got, want := fmt.Sprint(codes(res.Data)), "[250 451 250 554]"; got != want {
			t.Fatalf("per-recipient replies %v, want codes %s", res.Data, want)
		}
		for i, wantEnh := range []string{"2.", "4.3.0", "2.", "5.3.0"} {
			if txt, _ := res.Data[i][1].(string); !strings.HasPrefix(txt, wantEnh) {
				t.Errorf("reply %d %q, want enhanced code %s", i, txt, wantEnh)
			}
		}
		for _, rc := range []string{"alice@example.test", "bob@example.test"} {
			f := findMessage(t, s.d.mailbox(rc), m.ID)
			checkDelivered(t, f, m)
			if got := receivedWith(t, f); got != "LMTP" {
				t.Errorf("Received ... with %s, want LMTP", got)
			}
		}
	})
}

// TestGoNetSMTP sends with the standard library's net/smtp client:
// STARTTLS verified against the test certificate, then AUTH PLAIN (a wrong
// password first, on its own connection: net/smtp quits after a failed
// AUTH).
func TestGoNetSMTP(t *testing.T) {
	s := newClientSetup(t)
	host, _, _ := net.SplitHostPort(s.d.SMTPAddr)
	dial := func() *smtp.Client {
		c, err := smtp.Dial(s.d.SMTPAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.Hello("client.example.test"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := c.Extension("STARTTLS"); !ok {
			t.Fatal("STARTTLS not advertised")
		}
		if err := c.StartTLS(s.cert.ClientConfig(host)); err != nil {
			t.Fatal(err)
		}
		if ok, mechs := c.Extension("AUTH"); !ok || !strings.Contains(mechs, "PLAIN") {
			t.Fatalf("AUTH after STARTTLS: %v %q, want PLAIN", ok, mechs)
		}
		return c
	}
	if err := dial().Auth(smtp.PlainAuth("", s.user, "wrong", host)); err == nil || !strings.Contains(err.Error(), "535") {
		t.Fatalf("AUTH with a wrong password: %v, want 535", err)
	}
	c := dial()
	if err := c.Auth(smtp.PlainAuth("", s.user, s.pass, host)); err != nil {
		t.Fatal(err)
	}
	m := newMessage("go-netsmtp", s.user, "alice@example.test", 20000)
	if err := c.Mail(s.user); err != nil {
		t.Fatal(err)
	}
	for _, rc := range []string{"alice@example.test", "bob@example.test"} {
		if err := c.Rcpt(rc); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Rcpt("nobody@example.test"); err == nil || !strings.Contains(err.Error(), "550") {
		t.Fatalf("RCPT to an unknown user: %v, want 550", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(m.Wire); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	for _, rc := range []string{"alice@example.test", "bob@example.test"} {
		f := findMessage(t, s.d.mailbox(rc), m.ID)
		checkDelivered(t, f, m)
		// net/smtp adds SMTPUTF8 to MAIL whenever the server offers it, so
		// the keyword is RFC 6531's UTF8SMTPSA.
		if got := receivedWith(t, f); got != "UTF8SMTPSA" {
			t.Errorf("Received ... with %s, want UTF8SMTPSA", got)
		}
	}
}

// TestGoSMTPLMTP sends with github.com/emersion/go-smtp's LMTP client over
// the unix socket and over TCP, with 8BITMIME and SMTPUTF8, and checks
// its per-recipient results.
func TestGoSMTPLMTP(t *testing.T) {
	d := newDaemon(t, daemonOptions{Domains: testDomains("")})
	for _, tc := range []struct{ network, addr, domain string }{
		{"unix", d.Socket, "example.test"},
		{"tcp", d.LMTPAddr, "tcp.example.test"},
	} {
		t.Run(tc.network, func(t *testing.T) {
			conn, err := net.Dial(tc.network, tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			c := gosmtp.NewClientLMTP(conn)
			defer c.Close()
			if err := c.Hello("client.example.test"); err != nil {
				t.Fatal(err)
			}
			at := "@" + tc.domain
			body := []byte("8-bit text: Grüße aus Köln, ½ €, ünïcödé\nand a line\n.starting with a dot\n")
			m := buildMessage("gosmtp-"+tc.network, "sender"+at, "jörg"+at, "=?utf-8?q?Gr=C3=BC=C3=9Fe?=", body,
				[]string{"MIME-Version: 1.0\n", "Content-Type: text/plain; charset=utf-8\n", "Content-Transfer-Encoding: 8bit\n"})
			if err := c.Mail("sender"+at, &gosmtp.MailOptions{Body: gosmtp.Body8BitMIME, UTF8: true}); err != nil {
				t.Fatal(err)
			}
			rcpts := []string{"jörg" + at, "defer" + at, "alice" + at}
			for _, rc := range rcpts {
				if err := c.Rcpt(rc, nil); err != nil {
					t.Fatalf("RCPT %s: %v", rc, err)
				}
			}
			w, err := c.Data()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(m.Wire); err != nil {
				t.Fatal(err)
			}
			resp, err := w.CloseWithLMTPResponse()
			var lerr gosmtp.LMTPDataError
			if !errors.As(err, &lerr) {
				t.Fatalf("CloseWithLMTPResponse: %v, want an LMTPDataError for defer%s", err, at)
			}
			if e := lerr["defer"+at]; e == nil || e.Code != 451 || e.EnhancedCode != (gosmtp.EnhancedCode{4, 3, 0}) || len(lerr) != 1 {
				t.Fatalf("per-recipient errors %v, want only defer%s with 451 4.3.0", err, at)
			}
			for _, rc := range []string{"jörg" + at, "alice" + at} {
				if resp[rc] == nil {
					t.Fatalf("no 250 for %s: %v", rc, resp)
				}
				f := findMessage(t, d.mailbox(rc), m.ID)
				checkDelivered(t, f, m)
				if got := receivedWith(t, f); got != "UTF8LMTP" {
					t.Errorf("Received ... with %s, want UTF8LMTP", got)
				}
			}
			if err := c.Quit(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
