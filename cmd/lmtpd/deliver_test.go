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
