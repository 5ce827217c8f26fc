package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"
)

const testReceived = "Received: from client.test ([192.0.2.1])\r\n\tby mx.test (lmtpd) with LMTP\r\n\tid S1.1\r\n"

func TestReadHeader(t *testing.T) {
	long := "Subject: " + strings.Repeat("x", 100) + "\r\n"
	tests := []struct {
		name     string
		in       string
		top      string
		max      int
		bufSize  int // of the bufio.Reader; 0 for the server's
		raw      string
		received int
		body     string
		err      error
	}{
		{name: "fields and body", in: "From: a@b.test\r\nSubject: hi\r\n\r\nbody\r\n",
			raw: "From: a@b.test\r\nSubject: hi\r\n\r\n", body: "body\r\n"},
		{name: "Received on top", in: "Subject: hi\r\n\r\nbody\r\n", top: testReceived,
			raw: testReceived + "Subject: hi\r\n\r\n", body: "body\r\n"},
		{name: "folded field", in: "Subject: a\r\n b\r\n\tc\r\nTo: x\r\n\r\nbody",
			raw: "Subject: a\r\n b\r\n\tc\r\nTo: x\r\n\r\n", body: "body"},
		{name: "body line ends the header", in: "From: a\r\nnot a field\r\nmore\r\n",
			raw: "From: a\r\n", body: "not a field\r\nmore\r\n"},
		{name: "leading white space is body", in: " From: a\r\n\r\n",
			raw: "", body: " From: a\r\n\r\n"},
		{name: "empty header", in: "\r\nbody\r\n", raw: "\r\n", body: "body\r\n"},
		{name: "empty message", in: "", raw: "", body: ""},
		{name: "empty message with Received", in: "", top: testReceived, raw: testReceived},
		{name: "header without end", in: "From: a\r\nSubject: b", raw: "From: a\r\nSubject: b\r\n"},
		// A message of header fields only: no empty line is invented.
		{name: "header only", in: "From: a\r\nSubject: b\r\n", raw: "From: a\r\nSubject: b\r\n"},
		{name: "header only with Received", in: "Subject: b\r\n", top: testReceived, raw: testReceived + "Subject: b\r\n"},
		{name: "header only, folded last", in: "Subject: b\r\n c\r\n", raw: "Subject: b\r\n c\r\n"},
		{name: "header and empty body", in: "Subject: b\r\n\r\n", raw: "Subject: b\r\n\r\n"},
		{name: "space before colon", in: "Subject : hi\r\n\r\n", raw: "Subject : hi\r\n\r\n"},
		{name: "Received counted in any case", in: "Received: a\r\nreceived : b\r\nRECEIVED:c\r\n d\r\nX-Received: e\r\nReceivedx: f\r\n\r\n",
			raw: "Received: a\r\nreceived : b\r\nRECEIVED:c\r\n d\r\nX-Received: e\r\nReceivedx: f\r\n\r\n", received: 3},
		{name: "Received in a continuation is not a field", in: "Subject: x\r\n Received: y\r\n\r\n",
			raw: "Subject: x\r\n Received: y\r\n\r\n"},
		{name: "line longer than the buffer", in: long + "To: x\r\n\r\nbody", bufSize: 16,
			raw: long + "To: x\r\n\r\n", body: "body"},
		{name: "long body line", in: "To: x\r\n" + strings.Repeat("y", 100) + "\r\nz", bufSize: 16,
			raw: "To: x\r\n", body: strings.Repeat("y", 100) + "\r\nz"},
		{name: "too big", in: "Subject: 0123456789\r\n\r\n", max: 10, err: ErrHeaderTooBig},
		// The bound counts the empty line too.
		{name: "just fits", in: "Subject: 01\r\n\r\nb", max: 15, raw: "Subject: 01\r\n\r\n", body: "b"},
		{name: "one over", in: "Subject: 01\r\n\r\nb", max: 14, err: ErrHeaderTooBig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			max := tt.max
			if max == 0 {
				max = DefaultMaxHeaderBytes
			}
			var br *bufio.Reader
			if tt.bufSize > 0 {
				br = bufio.NewReaderSize(strings.NewReader(tt.in), tt.bufSize)
			} else {
				br = getHeaderReader(strings.NewReader(tt.in))
			}
			var top []byte
			if tt.top != "" {
				top = []byte(tt.top)
			}
			raw, received, body, err := readHeader(br, max, &headerScratch{}, top)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if string(raw) != tt.raw || received != tt.received {
				t.Errorf("raw %q, %d Received; want %q, %d", raw, received, tt.raw, tt.received)
			}
			if len(raw) != cap(raw) {
				t.Errorf("raw has spare capacity %d", cap(raw)-len(raw))
			}
			b, err := io.ReadAll(body)
			if err != nil || string(b) != tt.body {
				t.Errorf("body %q, %v; want %q", b, err, tt.body)
			}
			if got, want := (&Message{hdr: &headerState{raw: raw}}).HasBlankLine(), strings.Contains(tt.raw, "\r\n\r\n") || tt.raw == "\r\n"; got != want {
				t.Errorf("HasBlankLine = %v, want %v", got, want)
			}
			checkParsed(t, raw, received+btoi(top != nil))
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// checkParsed checks parseHeader's result against raw: written back
// unchanged it is raw, byte for byte; it holds received Received fields;
// and it has the fields go-message's own reader finds in raw.
func checkParsed(t *testing.T, raw []byte, received int) {
	t.Helper()
	m := &Message{hdr: &headerState{raw: raw}}
	h := m.Header()
	if m.Header() != h {
		t.Error("a second Header call parsed again")
	}
	var w bytes.Buffer
	if err := textproto.WriteHeader(&w, *h); err != nil {
		t.Fatal(err)
	}
	if !m.HasBlankLine() {
		// WriteHeader always ends with the empty line.
		raw = append(raw[:len(raw):len(raw)], "\r\n"...)
	}
	if !bytes.Equal(w.Bytes(), raw) {
		t.Errorf("written back:\n%q\nwant\n%q", w.Bytes(), raw)
	}
	if n := h.FieldsByKey("Received").Len(); n != received {
		t.Errorf("%d Received fields parsed, %d counted", n, received)
	}
	want, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return // go-message is stricter about some field names
	}
	got, exp := fieldList(h), fieldList(&want)
	if got != exp {
		t.Errorf("fields\n%s\nwant (go-message ReadHeader)\n%s", got, exp)
	}
}

func fieldList(h *textproto.Header) string {
	var b strings.Builder
	for f := h.Fields(); f.Next(); {
		b.WriteString(f.Key() + ": " + f.Value() + "\n")
	}
	return b.String()
}

// TestMessageHeader covers the header's life in a Message: shared by
// copies, changed in place, and set by hand.
func TestMessageHeader(t *testing.T) {
	raw := []byte("Return-Path: <x@y.test>\r\nSubject: hi\r\n\r\n")
	m := &Message{hdr: &headerState{raw: raw}}
	cp := *m // as a wrapper that replaces Body does
	cp.Header().Del("Return-Path")
	if got := m.Header().Get("Return-Path"); got != "" {
		t.Errorf("the original still has Return-Path %q", got)
	}
	if !bytes.Equal(m.RawHeader(), raw) {
		t.Errorf("RawHeader changed: %q", m.RawHeader())
	}

	var h textproto.Header
	h.Add("Subject", "by hand")
	var built Message
	if built.RawHeader() != nil || built.Header().Len() != 0 {
		t.Error("a zero Message has a header")
	}
	built.SetHeader(h)
	if got := built.Header().Get("Subject"); got != "by hand" {
		t.Errorf("Subject %q", got)
	}
	if got := string(built.RawHeader()); got != "Subject: by hand\r\n\r\n" {
		t.Errorf("RawHeader %q", got)
	}
}

func FuzzReadHeader(f *testing.F) {
	for _, s := range []string{
		"From: a@b.test\r\nSubject: hi\r\n\r\nbody\r\n",
		"Subject: a\r\n b\r\n\tc\r\nTo: x\r\n\r\nbody",
		"Received: a\r\nreceived : b\r\n\r\n",
		"From: a\r\nnot a field\r\n",
		" x\r\n\r\n",
		"A: 1\nB: 2\n\nbody",
		"A: 1\r\nB",
		"Subject: " + strings.Repeat("x", 80) + "\r\n\r\n",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, in []byte, withTop bool) {
		var top []byte
		if withTop {
			top = []byte(testReceived)
		}
		br := bufio.NewReaderSize(bytes.NewReader(in), 16)
		raw, received, body, err := readHeader(br, 4096, &headerScratch{}, top)
		if errors.Is(err, ErrHeaderTooBig) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		rest, err := io.ReadAll(body)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(raw, top) || len(raw) > 0 && raw[len(raw)-1] != '\n' {
			t.Fatalf("raw %q", raw)
		}
		// Nothing is lost or added: the header as read, the empty line
		// that ended it (if any, and then in raw as CRLF) and the body
		// are the input.
		blank := hasBlankLine(raw)
		fields := raw[len(top):]
		if blank {
			fields = fields[:len(fields)-2]
		}
		switch {
		case bytes.HasPrefix(in, fields):
			gap := in[len(fields) : len(in)-len(rest)]
			if !bytes.HasSuffix(in, rest) || blank != (len(gap) > 0) || len(gap) > 0 && !isBlankLine(gap) {
				t.Fatalf("input %q split as %q + %q", in, fields, rest)
			}
		case !blank && len(rest) == 0 && string(fields) == string(in)+"\r\n":
			// A header without a line end at the end of input.
		default:
			t.Fatalf("input %q split as %q + %q", in, fields, rest)
		}
		checkParsed(t, raw, received+btoi(withTop))
	})
}
