package policy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"sort"
	"strings"
	"testing"

	"github.com/lmtpd/lmtpd/internal/wiretest"
)

// FuzzReadRequest: ReadRequest never panics, honours its limits, and a
// request it accepts, written out again, reads back the same.
func FuzzReadRequest(f *testing.F) {
	for _, s := range []string{
		"request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=a@b\nsize=10\n\n",
		"request=x\r\nk=a=b\r\n\r\n",
		"request=x\nrecipient=1\nrecipient=2\n\nrequest=y\n\n",
		"request=x\nccert_subject=a+20b\n\n",
		"request=x\nsize=-1\n\n",
		"recipient\n\n",
		"=\n\n",
		"\n",
		"request=x\x00\n\n",
		"request=x",
	} {
		f.Add([]byte(s))
	}
	lim := Limits{MaxLineLength: 64, MaxAttributes: 8, MaxRequestBytes: 256}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), lim.MaxLineLength)
		req, err := ReadRequest(br, lim)
		if err != nil {
			if req != nil {
				t.Fatal("a request and an error")
			}
			if !errors.Is(err, ErrMalformed) && err != io.EOF {
				t.Fatalf("error %v is neither ErrMalformed nor io.EOF", err)
			}
			return
		}
		if req.Request == "" || req.Request != req.Attrs["request"] {
			t.Fatalf("accepted a request without the request attribute: %q", req.Attrs)
		}
		if len(req.Attrs) > lim.MaxAttributes {
			t.Fatalf("%d attributes, limit %d", len(req.Attrs), lim.MaxAttributes)
		}
		var out bytes.Buffer
		names := make([]string, 0, len(req.Attrs))
		for k := range req.Attrs {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			v := req.Attrs[k]
			if k == "" || strings.ContainsAny(k, "=\n\x00") || strings.ContainsAny(v, "\n\x00") {
				t.Fatalf("attribute %q=%q cannot have been on the wire", k, v)
			}
			out.WriteString(k + "=" + v + "\n")
		}
		out.WriteString("\n")
		again, err := ReadRequest(bufio.NewReader(&out), Limits{MaxRequestBytes: 1 << 20})
		if err != nil {
			// A value ending in CR loses it on the way back; nothing else
			// may change.
			for _, v := range req.Attrs {
				if strings.HasSuffix(v, "\r") {
					return
				}
			}
			t.Fatalf("re-reading %q: %v", out.String(), err)
		}
		for k, v := range req.Attrs {
			if again.Attrs[k] != v && !strings.HasSuffix(v, "\r") {
				t.Fatalf("attribute %s: %q then %q", k, v, again.Attrs[k])
			}
		}
	})
}

// FuzzSession feeds arbitrary bytes to a server over a pipe: it never
// panics, every reply is an action line and an empty line, and the
// handler is called at most once per reply.
func FuzzSession(f *testing.F) {
	f.Add([]byte(request("full@example.org") + request("bob@example.org")))
	f.Add([]byte(request("down@example.org") + "garbage\n\n"))
	f.Add([]byte("request=x\nprotocol_state=RCPT\nrecipient=newline@x\n\n"))
	f.Add([]byte("\n\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h := newFakeHandler()
		s := &Server{Handler: HandlerFunc(func(ctx context.Context, r *Request) (Action, error) {
			if strings.HasPrefix(r.Recipient, "panic@") || strings.HasPrefix(r.Recipient, "slow@") || strings.HasPrefix(r.Recipient, "late@") {
				return Dunno, nil
			}
			return h.Policy(ctx, r)
		}), MaxLineLength: 128, MaxAttributes: 16, MaxRequestBytes: 512}
		defer s.Close()
		out := wiretest.Feed(t, s.ServeConn, data)
		br := bufio.NewReader(bytes.NewReader(out))
		replies := 0
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				if line != "" {
					t.Fatalf("partial reply %q", line)
				}
				break
			}
			if !strings.HasPrefix(line, "action=") {
				t.Fatalf("reply line %q", line)
			}
			if a := Action(strings.TrimSuffix(line[len("action="):], "\n")); a.Validate() != nil {
				t.Fatalf("invalid action sent: %q", a)
			}
			if empty, err := br.ReadString('\n'); err != nil || empty != "\n" {
				t.Fatalf("reply %q not followed by an empty line: %q", line, empty)
			}
			replies++
			if replies*2 > len(data) {
				t.Fatalf("%d replies to %d bytes", replies, len(data))
			}
		}
		if h.calls() < replies {
			t.Fatalf("%d replies, %d handler calls", replies, h.calls())
		}
	})
}
