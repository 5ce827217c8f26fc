package main

import (
	"bufio"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/lmtpd/lmtpd/protocol"
)

func perm(code int, ec protocol.EnhancedCode) error { return protocol.NewError(code, ec, "text") }

func TestDeliverOutcome(t *testing.T) {
	unknown := perm(550, protocol.EnhancedCode{5, 1, 1})
	denied := perm(550, protocol.EnhancedCode{5, 7, 0})
	temp := perm(451, protocol.EnhancedCode{4, 3, 0})
	rcpts := []string{"a@x", "b@x", "c@x"}
	tests := []struct {
		name    string
		results []error
		status  int
		lines   []string
	}{
		{"all delivered", []error{nil, nil, nil}, 0, nil},
		{"one permanent", []error{nil, unknown, nil}, exNoUser, []string{"5.1.1 <b@x>: text"}},
		{"first permanent decides", []error{denied, unknown, nil}, exNoPerm, []string{"5.7.0 <a@x>: text", "5.1.1 <b@x>: text"}},
		{"temporary wins and comes first", []error{unknown, nil, temp}, exTempFail, []string{"4.3.0 <c@x>: text", "5.1.1 <a@x>: text"}},
		{"generic error is temporary", []error{nil, errors.New("boom"), nil}, exTempFail, []string{"4.3.0 <b@x>: temporary failure"}},
		{"no enhanced code", []error{protocol.NewError(550, protocol.EnhancedCode{}, "no"), nil, nil}, exUnavailable, []string{"5.0.0 <a@x>: no"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, lines := deliverOutcome(rcpts, tc.results)
			if status != tc.status || !reflect.DeepEqual(lines, tc.lines) {
				t.Errorf("got %d %q, want %d %q", status, lines, tc.status, tc.lines)
			}
		})
	}
}

func TestSkipMboxFrom(t *testing.T) {
	tests := []struct {
		in, sender, rest string
	}{
		{"From bob@example.org Sat Nov 21 12:00:00 2026\nSubject: x\n", "bob@example.org", "Subject: x\n"},
		{"From: bob@example.org\n\nx", "", "From: bob@example.org\n\nx"},
		{"Subject: x\n", "", "Subject: x\n"},
		{"Fro", "", "Fro"},
		{"", "", ""},
		{"From \n", "", ""},
	}
	for _, tc := range tests {
		br := bufio.NewReader(strings.NewReader(tc.in))
		sender, err := skipMboxFrom(br)
		rest, _ := io.ReadAll(br)
		if err != nil || sender != tc.sender || string(rest) != tc.rest {
			t.Errorf("skipMboxFrom(%q) = %q, %v, rest %q; want %q, rest %q", tc.in, sender, err, rest, tc.sender, tc.rest)
		}
	}
	if _, err := skipMboxFrom(bufio.NewReader(iotest.ErrReader(errors.New("broken")))); err == nil {
		t.Error("a read error is not reported")
	}
}

func TestReadLocalHeader(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		max     int
		subject string
		fields  int
		body    string
		err     error
	}{
		{"LF", "Subject: hi\nTo: a@b\n\nbody\n", 1000, "hi", 2, "body\n", nil},
		{"CRLF", "Subject: hi\r\nX: 1\r\n\r\nbody\r\n", 1000, "hi", 2, "body\r\n", nil},
		{"folded", "Subject: a\n b\n\nbody", 1000, "a b", 1, "body", nil},
		{"no blank line: body starts at a non-field line", "Subject: hi\nthis is text\nmore\n", 1000, "hi", 1, "this is text\nmore\n", nil},
		{"header only", "Subject: hi\n", 1000, "hi", 1, "", nil},
		{"no header", "\nbody", 1000, "", 0, "body", nil},
		{"empty", "", 1000, "", 0, "", nil},
		{"too big", "Subject: " + strings.Repeat("x", 100) + "\n\n", 50, "", 0, "", protocol.ErrHeaderTooBig},
		{"long first line goes to the body", strings.Repeat("y", 70000) + "\n", 1 << 20, "", 0, strings.Repeat("y", 70000) + "\n", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hdr, body, err := readLocalHeader(bufio.NewReaderSize(strings.NewReader(tc.in), 64<<10), tc.max)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("error %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(body)
			if got := hdr.Get("Subject"); got != tc.subject || hdr.Len() != tc.fields || string(b) != tc.body {
				t.Errorf("subject %q, %d fields, body %q", got, hdr.Len(), b)
			}
		})
	}
}

func TestLocalReceived(t *testing.T) {
	msg := &protocol.Message{ID: "lxyz.1", Recipients: []*protocol.Recipient{{Address: protocol.Address{LocalPart: "bob", Domain: "example.test"}}}}
	got := string(localReceived("mx;evil", msg))
	if !strings.HasPrefix(got, "Received: by mx_evil (lmtpd deliver, from ") || !strings.Contains(got, "\r\n\tid lxyz.1\r\n\tfor <bob@example.test>;\r\n\t") || !strings.HasSuffix(got, "\r\n") {
		t.Errorf("Received field:\n%s", got)
	}
	msg.Recipients = append(msg.Recipients, msg.Recipients[0])
	if got := string(localReceived("mx", msg)); strings.Contains(got, "for <") {
		t.Errorf("several recipients are named:\n%s", got)
	}
}
