package main

import (
	"context"
	"crypto/tls"
	dbsql "database/sql"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/delivery"
	"github.com/lmtpd/lmtpd/directory"
	"github.com/lmtpd/lmtpd/protocol"
)

// metrics holds lmtpd's Prometheus metrics and serves them over HTTP
// with /healthz. Outcomes are observed from outside the protocol and
// delivery packages: a Backend wrapper counts transactions, recipients and
// bytes; a net.Listener wrapper counts connections; tls.Config hooks count
// handshakes; the Authenticator reports AUTH results; delivery latency per
// backend comes from the delivery router's Observe hook
// writes (observeLogLine), the one place that names the backend.
type metrics struct {
	reg          *prometheus.Registry
	connsOpen    *prometheus.GaugeVec
	connsTotal   *prometheus.CounterVec
	transactions *prometheus.CounterVec
	recipients   *prometheus.CounterVec
	bytes        prometheus.Counter
	quota        *quotaMetrics // metrics_quota.go
	latency      *prometheus.HistogramVec
	tlsStarted   *prometheus.CounterVec
	tlsDone      *prometheus.CounterVec
	auth         *prometheus.CounterVec
	dirLookups   *prometheus.CounterVec
	dirLatency   *prometheus.HistogramVec
	sieve        *prometheus.CounterVec
	up           atomic.Bool
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		connsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lmtpd_connections_open", Help: "Connections currently open, by listener.",
		}, []string{"listener"}),
		connsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lmtpd_connections_total", Help: "Connections accepted, by listener.",
		}, []string{"listener"}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lmtpd_transactions_total", Help: "Mail transactions started (MAIL accepted), by protocol.",
		}, []string{"protocol"}),
		recipients: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lmtpd_recipients_total", Help: "Recipient outcomes after the message, by reply class (2xx delivered, 4xx deferred, 5xx refused).",
		}, []string{"class"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lmtpd_received_bytes_total", Help: "Message bytes received (after the header, as read by the delivery backend).",
		}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lmtpd_delivery_duration_seconds",
			Help:    "Time to deliver one recipient's copy, by backend (maildir, pipe).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"backend"}),
		tlsStarted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lmtpd_tls_handshakes_started_total", Help: "TLS handshakes started (ClientHello received), by listener.",
		}, []string{"listener"}),
		tlsDone: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lmtpd_tls_handshakes_completed_total", Help: "TLS handshakes completed, by listener and TLS version; started minus completed failed.",
		}, []string{"listener", "version"}),
		auth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lmtpd_auth_attempts_total", Help: "AUTH exchanges finished, by listener, mechanism and result (ok, failed, malformed, error).",
		}, []string{"listener", "mechanism", "result"}),
		dirLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lmtpd_directory_lookups_total",
			Help: "Directory lookups answered, by directory, kind (user, alias, password, auth), result (found, not_found, error, bad_password) and source (directory: a query; cache: a cache hit; shared: another query in flight).",
		}, []string{"directory", "kind", "result", "source"}),
		dirLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lmtpd_directory_lookup_duration_seconds",
			Help:    "Time a lookup waited for the directory (cache hits not included), by directory and kind.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"directory", "kind"}),
		sieve: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lmtpd_sieve_events_total", Help: "Sieve actions carried out (keep, implicit_keep, fileinto, discard, reject, ereject, redirect, vacation, ...) and errors (compile_error once per version of a broken script, runtime_error, read_error), by event.",
		}, []string{"event"}),
	}
	m.reg.MustRegister(m.connsOpen, m.connsTotal, m.transactions, m.recipients, m.bytes, m.latency,
		m.tlsStarted, m.tlsDone, m.auth, m.dirLookups, m.dirLatency, m.sieve,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.quota = newQuotaMetrics(m.reg)
	return m
}

// setUp sets what /healthz answers: 200 while the listeners serve.
func (m *metrics) setUp(up bool) { m.up.Store(up) }

// handler serves /metrics and /healthz.
func (m *metrics) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !m.up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "stopping\n")
			return
		}
		io.WriteString(w, "ok\n")
	})
	return mux
}

// serve serves the handler on ln until ctx ends.
func (m *metrics) serve(ctx context.Context, ln net.Listener, log *zerolog.Logger) {
	hs := &http.Server{Handler: m.handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		hs.Shutdown(sctx)
	}()
	if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error().Err(err).Msg("metrics listener failed")
	}
}

// wrapListener counts the connections ln accepts.
func (m *metrics) wrapListener(ln net.Listener, name string) net.Listener {
	return &countingListener{Listener: ln, open: m.connsOpen.WithLabelValues(name), total: m.connsTotal.WithLabelValues(name)}
}

type countingListener struct {
	net.Listener
	open  prometheus.Gauge
	total prometheus.Counter
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.total.Inc()
	l.open.Inc()
	return &countingConn{Conn: c, open: l.open}, nil
}

type countingConn struct {
	net.Conn
	open prometheus.Gauge
	once sync.Once
}

func (c *countingConn) Close() error {
	c.once.Do(c.open.Dec)
	return c.Conn.Close()
}

// tlsHooks returns the tls.Config callbacks counting a listener's
// handshakes.
func (m *metrics) tlsHooks(listener string) (func(), func(tls.ConnectionState)) {
	started := m.tlsStarted.WithLabelValues(listener)
	return started.Inc, func(cs tls.ConnectionState) {
		m.tlsDone.WithLabelValues(listener, tls.VersionName(cs.Version)).Inc()
	}
}

// authOutcome returns the callback counting a listener's AUTH results.
func (m *metrics) authOutcome(listener string) func(mech, result string) {
	return func(mech, result string) { m.auth.WithLabelValues(listener, mech, result).Inc() }
}

// sieveEvent counts a Sieve action or error: delivery's ObserveSieve hook.
func (m *metrics) sieveEvent(event string) { m.sieve.WithLabelValues(event).Inc() }

// observe feeds the latency histogram; it is the delivery router's
// Options.Observe hook, called once per recipient and destination.
func (m *metrics) observe(o delivery.Outcome) {
	m.latency.WithLabelValues(o.Backend).Observe(o.Duration.Seconds())
}

// replyClass returns "2xx", "4xx" or "5xx" for a recipient outcome; an
// error that is not a *protocol.Error is answered as a temporary failure.
func replyClass(err error) string {
	if err == nil {
		return "2xx"
	}
	if e := protocol.AsError(err); e != nil {
		return strconv.Itoa(e.Code/100) + "xx"
	}
	return "4xx"
}

// wrapBackend counts what passes through b.
func (m *metrics) wrapBackend(b protocol.Backend) protocol.Backend {
	return &meteredBackend{next: b, m: m}
}

type meteredBackend struct {
	next protocol.Backend
	m    *metrics
}

func (b *meteredBackend) Mail(ctx context.Context, c *protocol.ConnState, from protocol.Address, p *protocol.MailParams) (protocol.Transaction, error) {
	tx, err := b.next.Mail(ctx, c, from, p)
	if err != nil {
		return nil, err
	}
	b.m.transactions.WithLabelValues(c.Protocol.String()).Inc()
	mt := &meteredTx{Transaction: tx, m: b.m}
	if st, ok := tx.(protocol.Stager); ok {
		return &meteredStager{meteredTx: mt, st: st}, nil
	}
	return mt, nil
}

// meteredTx counts a transaction's bytes and recipient outcomes.
type meteredTx struct {
	protocol.Transaction
	m     *metrics
	nrcpt int // recipients of the staged message
}

// countingReader counts the bytes read through it into a counter.
type countingReader struct {
	r io.Reader
	c prometheus.Counter
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.c.Add(float64(n))
	}
	return n, err
}

// counted returns a copy of msg whose Body counts bytes.
func (t *meteredTx) counted(msg *protocol.Message) *protocol.Message {
	cp := *msg
	if cp.Body != nil {
		cp.Body = &countingReader{r: msg.Body, c: t.m.bytes}
	}
	return &cp
}

func (t *meteredTx) Data(ctx context.Context, msg *protocol.Message, status protocol.StatusSetter) error {
	ss := &countingStatus{next: status, set: make([]bool, len(msg.Recipients)), m: t.m}
	err := t.Transaction.Data(ctx, t.counted(msg), ss)
	ss.finish(err)
	return err
}

// countingStatus passes statuses on and counts the first per recipient.
type countingStatus struct {
	next protocol.StatusSetter
	m    *metrics
	mu   sync.Mutex
	set  []bool
}

func (s *countingStatus) Set(i int, err error) {
	s.mu.Lock()
	first := i >= 0 && i < len(s.set) && !s.set[i]
	if first {
		s.set[i] = true
	}
	s.mu.Unlock()
	if first {
		s.m.recipients.WithLabelValues(replyClass(err)).Inc()
	}
	s.next.Set(i, err)
}

// finish counts the recipients left without a status: they get Data's
// return value.
func (s *countingStatus) finish(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, done := range s.set {
		if !done {
			s.set[i] = true
			s.m.recipients.WithLabelValues(replyClass(err)).Inc()
		}
	}
}

// meteredStager is a meteredTx over a transaction that stages (SMTP): the
// outcome is all-or-nothing, counted at Stage's failure or at Commit.
type meteredStager struct {
	*meteredTx
	st protocol.Stager
}

func (t *meteredStager) Stage(ctx context.Context, msg *protocol.Message) error {
	t.nrcpt = len(msg.Recipients)
	err := t.st.Stage(ctx, t.counted(msg))
	if err != nil {
		t.m.recipients.WithLabelValues(replyClass(err)).Add(float64(t.nrcpt))
	}
	return err
}

func (t *meteredStager) Commit(ctx context.Context) error {
	err := t.st.Commit(ctx)
	t.m.recipients.WithLabelValues(replyClass(err)).Add(float64(t.nrcpt))
	return err
}

// Observe implements directory.Observer: one event per directory lookup,
// from the Cache around each directory.
func (m *metrics) Observe(e directory.Event) {
	m.dirLookups.WithLabelValues(e.Directory, e.Kind.String(), e.Result.String(), e.Source.String()).Inc()
	if e.Source != directory.SourceCache {
		m.dirLatency.WithLabelValues(e.Directory, e.Kind.String()).Observe(e.Duration.Seconds())
	}
}

// openConnser and dbStatser are implemented by the directories that keep a connection
// pool: sql's Stats, ldap's OpenConns.
type openConnser interface{ OpenConns() int }
type dbStatser interface{ Stats() dbsql.DBStats }

// dirPools is a collector of the open connections of each directory of
// the current generation, read when scraped (so a reload's new pools are
// seen at once).
type dirPools struct {
	reg  *dirRegistry
	desc *prometheus.Desc
}

// watchDirectories registers the pool gauge of reg's directories.
func (m *metrics) watchDirectories(reg *dirRegistry) {
	m.reg.MustRegister(&dirPools{reg: reg, desc: prometheus.NewDesc("lmtpd_directory_pool_connections",
		"Connections a directory's pool holds open (sql and ldap), by directory.", []string{"directory"}, nil)})
}

func (p *dirPools) Describe(ch chan<- *prometheus.Desc) { ch <- p.desc }

func (p *dirPools) Collect(ch chan<- prometheus.Metric) {
	g := p.reg.acquire()
	if g == nil {
		return
	}
	defer g.release()
	for _, name := range g.order {
		var d directory.Directory = g.byName[name]
		if c := directory.AsCache(d); c != nil {
			d = c.Unwrap()
		}
		if t, ok := d.(trusted); ok {
			d = t.Directory
		}
		switch x := d.(type) {
		case openConnser:
			ch <- prometheus.MustNewConstMetric(p.desc, prometheus.GaugeValue, float64(x.OpenConns()), name)
		case dbStatser:
			ch <- prometheus.MustNewConstMetric(p.desc, prometheus.GaugeValue, float64(x.Stats().OpenConnections), name)
		}
	}
}
