package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/lmtpd/lmtpd/delivery"
	"github.com/lmtpd/lmtpd/protocol"
)

// fakeTx reads the body and reports scripted statuses.
type fakeTx struct {
	statuses []error // per recipient; nil entries are left unset when unset[i]
	unset    []bool
	dataErr  error
	stageErr error
	commit   error
	read     int64
}

func (f *fakeTx) Rcpt(ctx context.Context, rc *protocol.Recipient) error { return nil }
func (f *fakeTx) Close() error                                           { return nil }
func (f *fakeTx) Data(ctx context.Context, msg *protocol.Message, st protocol.StatusSetter) error {
	n, _ := io.Copy(io.Discard, msg.Body)
	f.read = n
	for i, err := range f.statuses {
		if !f.unset[i] {
			st.Set(i, err)
			st.Set(i, errors.New("a second Set must not count"))
		}
	}
	return f.dataErr
}

type fakeStagerTx struct{ fakeTx }

func (f *fakeStagerTx) Stage(ctx context.Context, msg *protocol.Message) error {
	n, _ := io.Copy(io.Discard, msg.Body)
	f.read = n
	return f.stageErr
}
func (f *fakeStagerTx) Commit(ctx context.Context) error { return f.commit }

type txBackend struct{ tx protocol.Transaction }

func (b txBackend) Mail(context.Context, *protocol.ConnState, protocol.Address, *protocol.MailParams) (protocol.Transaction, error) {
	return b.tx, nil
}

type nopStatus struct{ got map[int]error }

func (s *nopStatus) Set(i int, err error) {
	if _, ok := s.got[i]; !ok {
		s.got[i] = err
	}
}

func rcpts(n int) []*protocol.Recipient {
	out := make([]*protocol.Recipient, n)
	for i := range out {
		out[i] = &protocol.Recipient{}
	}
	return out
}

func TestMeteredBackend(t *testing.T) {
	m := newMetrics()
	temp := protocol.NewError(451, protocol.EnhancedCode{4, 3, 0}, "later")
	perm := protocol.NewError(550, protocol.EnhancedCode{5, 1, 1}, "no")
	ctx := context.Background()

	// LMTP: per-recipient statuses; the unset one gets Data's error.
	ftx := &fakeTx{statuses: []error{nil, perm, nil}, unset: []bool{false, false, true}, dataErr: temp}
	b := m.wrapBackend(txBackend{ftx})
	tx, err := b.Mail(ctx, &protocol.ConnState{Protocol: protocol.LMTP}, protocol.Address{}, &protocol.MailParams{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tx.(protocol.Stager); ok {
		t.Fatal("a transaction that cannot stage became a Stager")
	}
	st := &nopStatus{got: map[int]error{}}
	body := strings.Repeat("x", 1000)
	msg := &protocol.Message{Recipients: rcpts(3), Body: strings.NewReader(body)}
	tx.Data(ctx, msg, st)
	if st.got[0] != nil || st.got[1] != perm || len(st.got) != 2 {
		t.Errorf("statuses passed on: %v", st.got)
	}
	if ftx.read != 1000 || value(t, m.bytes) != 1000 {
		t.Errorf("read %d, counted %v", ftx.read, value(t, m.bytes))
	}
	check := func(class string, want float64) {
		t.Helper()
		if got := value(t, m.recipients.WithLabelValues(class)); got != want {
			t.Errorf("recipients %s = %v, want %v", class, got, want)
		}
	}
	check("2xx", 1)
	check("4xx", 1)
	check("5xx", 1)
	if got := value(t, m.transactions.WithLabelValues("LMTP")); got != 1 {
		t.Errorf("transactions %v", got)
	}

	// SMTP with staging: all-or-nothing.
	stx := &fakeStagerTx{}
	b = m.wrapBackend(txBackend{stx})
	tx, _ = b.Mail(ctx, &protocol.ConnState{Protocol: protocol.SMTP}, protocol.Address{}, &protocol.MailParams{})
	sg, ok := tx.(protocol.Stager)
	if !ok {
		t.Fatal("a staging transaction lost Stager")
	}
	if err := sg.Stage(ctx, &protocol.Message{Recipients: rcpts(2), Body: strings.NewReader("abc")}); err != nil {
		t.Fatal(err)
	}
	sg.Commit(ctx)
	check("2xx", 3)
	stx.stageErr = temp
	sg.Stage(ctx, &protocol.Message{Recipients: rcpts(4), Body: strings.NewReader("")})
	check("4xx", 5)
	stx.stageErr, stx.commit = nil, errors.New("not an *Error")
	sg.Stage(ctx, &protocol.Message{Recipients: rcpts(1), Body: strings.NewReader("")})
	sg.Commit(ctx)
	check("4xx", 6)
}

func TestReplyClass(t *testing.T) {
	for err, want := range map[error]string{
		nil: "2xx",
		protocol.NewError(452, protocol.EnhancedCode{4, 3, 1}, "x"):                       "4xx",
		protocol.WrapError(554, protocol.EnhancedCode{5, 3, 0}, "x", errors.New("cause")): "5xx",
		errors.New("plain"): "4xx",
	} {
		if got := replyClass(err); got != want {
			t.Errorf("replyClass(%v) = %s, want %s", err, got, want)
		}
	}
}

func TestObserve(t *testing.T) {
	m := newMetrics()
	for _, o := range []delivery.Outcome{
		{Backend: "maildir", Duration: 12500 * time.Microsecond},
		{Backend: "pipe", Duration: time.Second, Err: protocol.NewError(451, protocol.EnhancedCode{4, 3, 0}, "later")},
		{Backend: "maildir", Duration: time.Second},
	} {
		m.observe(o)
	}
	text := scrapeText(t, m)
	for _, want := range []string{
		`lmtpd_delivery_duration_seconds_bucket{backend="maildir",le="0.01"} 0`,
		`lmtpd_delivery_duration_seconds_bucket{backend="maildir",le="0.025"} 1`,
		`lmtpd_delivery_duration_seconds_bucket{backend="maildir",le="1"} 2`,
		`lmtpd_delivery_duration_seconds_sum{backend="maildir"} 1.0125`,
		`lmtpd_delivery_duration_seconds_count{backend="maildir"} 2`,
		`lmtpd_delivery_duration_seconds_bucket{backend="pipe",le="0.5"} 0`,
		`lmtpd_delivery_duration_seconds_count{backend="pipe"} 1`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// scrapeText returns what /metrics serves.
func scrapeText(t *testing.T, m *metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// value returns the value of a counter or gauge.
func value(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var d dto.Metric
	if err := (<-ch).Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

func TestCountingListenerAndHealth(t *testing.T) {
	m := newMetrics()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := m.wrapListener(raw, "test")
	defer ln.Close()
	go func() {
		for i := 0; i < 2; i++ {
			c, err := net.Dial("tcp", raw.Addr().String())
			if err == nil {
				defer c.Close()
			}
		}
	}()
	c1, _ := ln.Accept()
	c2, _ := ln.Accept()
	c1.Close()
	c1.Close() // a second Close must not count twice
	if open, total := value(t, m.connsOpen.WithLabelValues("test")), value(t, m.connsTotal.WithLabelValues("test")); open != 1 || total != 2 {
		t.Errorf("open %v total %v, want 1 and 2", open, total)
	}
	c2.Close()

	h := m.handler()
	for _, tc := range []struct {
		up   bool
		code int
	}{{false, 503}, {true, 200}} {
		m.setUp(tc.up)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		if rec.Code != tc.code {
			t.Errorf("healthz with up=%v: %d", tc.up, rec.Code)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `lmtpd_connections_total{listener="test"} 2`) {
		t.Errorf("/metrics lacks the connection count:\n%s", rec.Body.String())
	}
}
