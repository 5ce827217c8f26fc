package protocol

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
)

// localBackend records the message of a local delivery.
type localBackend struct {
	mu      sync.Mutex
	subject string
	fields  int
	raw     string
	body    string
	conn    ConnState
	from    string
	rcpts   []string
	mailErr error
}

func (b *localBackend) Mail(ctx context.Context, conn *ConnState, from Address, _ *MailParams) (Transaction, error) {
	if b.mailErr != nil {
		return nil, b.mailErr
	}
	b.conn, b.from = *conn, from.String()
	return &localTx{b: b}, nil
}

type localTx struct {
	b *localBackend
}

func (t *localTx) Rcpt(_ context.Context, r *Recipient) error {
	if strings.HasPrefix(r.Address.LocalPart, "unknown") {
		return NewError(550, ECPermBadDestMailbox, "No such user")
	}
	return nil
}

func (t *localTx) Data(_ context.Context, msg *Message, st StatusSetter) error {
	b, err := io.ReadAll(msg.Body)
	if err != nil {
		return err
	}
	t.b.mu.Lock()
	defer t.b.mu.Unlock()
	h := msg.Header()
	t.b.subject, t.b.fields, t.b.raw, t.b.body = h.Get("Subject"), h.Len(), string(msg.RawHeader()), string(b)
	for i, r := range msg.Recipients {
		t.b.rcpts = append(t.b.rcpts, r.Address.String())
		if strings.HasPrefix(r.Address.LocalPart, "full") {
			st.Set(i, NewError(452, ECTempMailboxFull, "Mailbox full"))
		}
	}
	return nil
}

func (t *localTx) Close() error { return nil }

// TestDeliverLocalHeader: the header of a local delivery is read the way
// the network's is, LF line endings accepted: up to the blank line, or up
// to the first line that is not a header field (which then starts the
// body), under MaxHeaderBytes.
func TestDeliverLocalHeader(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		max     int
		subject string
		fields  int
		body    string
		err     error
		raw     string // the header section the backend gets: fields as sent, the blank line as CRLF
	}{
		{"LF", "Subject: hi\nTo: a@b\n\nbody\n", 1000, "hi", 2, "body\n", nil, "Subject: hi\nTo: a@b\n\r\n"},
		{"CRLF", "Subject: hi\r\nX: 1\r\n\r\nbody\r\n", 1000, "hi", 2, "body\r\n", nil, "Subject: hi\r\nX: 1\r\n\r\n"},
		{"folded", "Subject: a\n b\n\nbody", 1000, "a b", 1, "body", nil, "Subject: a\n b\n\r\n"},
		{"no blank line: body starts at a non-field line", "Subject: hi\nthis is text\nmore\n", 1000, "hi", 1, "this is text\nmore\n", nil, "Subject: hi\n"},
		{"header only", "Subject: hi\n", 1000, "hi", 1, "", nil, "Subject: hi\n"},
		{"no header", "\nbody", 1000, "", 0, "body", nil, "\r\n"},
		{"empty", "", 1000, "", 0, "", nil, ""},
		{"too big", "Subject: " + strings.Repeat("x", 100) + "\n\n", 50, "", 0, "", ErrHeaderTooBig, ""},
		{"long first line goes to the body", strings.Repeat("y", 70000) + "\n", 1 << 20, "", 0, strings.Repeat("y", 70000) + "\n", nil, ""},
	}
	for _, tc := range tests {
		for _, oneByte := range []bool{false, true} {
			name := tc.name
			if oneByte {
				name += "/one byte reads"
			}
			t.Run(name, func(t *testing.T) {
				b := &localBackend{}
				s := &Server{Hostname: "mx.test", Backend: b, MaxHeaderBytes: tc.max, DisableReceived: true}
				var r io.Reader = strings.NewReader(tc.in)
				if oneByte {
					r = iotest.OneByteReader(r)
				}
				statuses, err := s.DeliverLocal(context.Background(), LocalEnvelope{Recipients: []Address{{LocalPart: "a", Domain: "example.test"}}}, r)
				if tc.err != nil {
					if !errors.Is(err, tc.err) {
						t.Fatalf("error %v, want %v", err, tc.err)
					}
					return
				}
				if err != nil || len(statuses) != 1 || statuses[0] != nil {
					t.Fatalf("DeliverLocal = %v, %v", statuses, err)
				}
				if b.subject != tc.subject || b.fields != tc.fields || b.body != tc.body {
					t.Errorf("subject %q, %d fields, body %q", b.subject, b.fields, b.body)
				}
				if b.raw != tc.raw {
					t.Errorf("header section %q, want %q", b.raw, tc.raw)
				}
			})
		}
	}
}

// TestDeliverLocalReceived: the Received field of a local delivery names
// the host and the origin, not a client, and the recipient only when there
// is one.
func TestDeliverLocalReceived(t *testing.T) {
	b := &localBackend{}
	s := &Server{Hostname: "mx;evil", Software: "lmtpd deliver", Backend: b}
	env := LocalEnvelope{From: Address{LocalPart: "s", Domain: "example.test"}, Recipients: []Address{{LocalPart: "bob", Domain: "example.test"}}, Origin: "alice uid 1000"}
	if _, err := s.DeliverLocal(context.Background(), env, strings.NewReader("Subject: x\n\nbody\n")); err != nil {
		t.Fatal(err)
	}
	got := b.raw
	if !strings.HasPrefix(got, "Received: by mx_evil (lmtpd deliver, from alice uid 1000)\r\n\tid ") || !strings.Contains(got, "\r\n\tfor <bob@example.test>;\r\n\t") || !strings.HasSuffix(got, "\r\nSubject: x\n\r\n") {
		t.Errorf("Received field:\n%s", got)
	}
	if b.conn.Protocol != LMTP || b.conn.ID == "" || !strings.Contains(got, "\tid "+b.conn.ID+".1\r\n") || b.from != "s@example.test" {
		t.Errorf("conn %+v, from %s, header %q", b.conn, b.from, got)
	}
	b = &localBackend{}
	s = &Server{Hostname: "mx", Backend: b}
	env.Recipients = append(env.Recipients, env.Recipients[0])
	env.Origin = "x(y)\r\n"
	if _, err := s.DeliverLocal(context.Background(), env, strings.NewReader("Subject: x\n\nbody\n")); err != nil {
		t.Fatal(err)
	}
	if got := b.raw; strings.Contains(got, "for <") || !strings.HasPrefix(got, "Received: by mx (from x_y___)\r\n") {
		t.Errorf("several recipients, no software:\n%s", got)
	}
}

// TestDeliverLocalStatuses: one status per recipient, in order: refusals
// at RCPT, statuses from Data, and Mail's refusal for every one; each
// outcome of Data reaches OnOutcome.
func TestDeliverLocalStatuses(t *testing.T) {
	b := &localBackend{}
	var outcomes []string
	s := &Server{Backend: b, OnOutcome: func(_ context.Context, o *Outcome) {
		r := "250"
		if o.Reply != nil {
			r = o.Reply.Enhanced().String()
		}
		outcomes = append(outcomes, o.To.Address.String()+" "+r)
	}}
	rcpts := []Address{{LocalPart: "a", Domain: "x"}, {LocalPart: "unknown", Domain: "x"}, {LocalPart: "full", Domain: "x"}, {LocalPart: "a", Domain: "x"}}
	statuses, err := s.DeliverLocal(context.Background(), LocalEnvelope{Recipients: rcpts}, strings.NewReader("Subject: x\n\nbody\n"))
	if err != nil || len(statuses) != 4 {
		t.Fatalf("DeliverLocal = %v, %v", statuses, err)
	}
	want := []string{"", "5.1.1", "4.2.2", ""}
	for i, w := range want {
		got := ""
		if statuses[i] != nil {
			got = AsError(statuses[i]).Enhanced().String()
		}
		if got != w {
			t.Errorf("status %d = %v, want %q", i, statuses[i], w)
		}
	}
	if strings.Join(b.rcpts, " ") != "a@x full@x a@x" {
		t.Errorf("Data got %q", b.rcpts)
	}
	if strings.Join(outcomes, ", ") != "a@x 250, full@x 4.2.2, a@x 250" {
		t.Errorf("outcomes %q", outcomes)
	}
	refused := NewError(451, ECTempSystem, "not now")
	s = &Server{Backend: &localBackend{mailErr: refused}}
	statuses, err = s.DeliverLocal(context.Background(), LocalEnvelope{Recipients: rcpts[:2]}, strings.NewReader("x"))
	if err != nil || len(statuses) != 2 || statuses[0] != refused || statuses[1] != refused {
		t.Errorf("refused MAIL: %v, %v", statuses, err)
	}
	if _, err := s.DeliverLocal(context.Background(), LocalEnvelope{Recipients: rcpts[:1]}, iotest.ErrReader(errors.New("broken"))); err == nil || err.Error() != "broken" {
		t.Errorf("read error: %v", err)
	}
}
