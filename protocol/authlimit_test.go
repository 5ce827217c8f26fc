package protocol

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/sasl"
)

func TestAuthLimiter(t *testing.T) {
	if got := NewAuthLimiter(0, 0).Max(); got != runtime.GOMAXPROCS(0) {
		t.Errorf("default slots %d, want GOMAXPROCS %d", got, runtime.GOMAXPROCS(0))
	}
	l := NewAuthLimiter(2, -1)
	r1, err1 := l.Acquire(context.Background())
	r2, err2 := l.Acquire(context.Background())
	if err1 != nil || err2 != nil || l.InUse() != 2 {
		t.Fatalf("two slots: %v %v, in use %d", err1, err2, l.InUse())
	}
	if _, err := l.Acquire(context.Background()); !errors.Is(err, ErrAuthBusy) {
		t.Fatalf("third without waiting: %v, want ErrAuthBusy", err)
	}
	r1()
	r3, err := l.Acquire(context.Background())
	if err != nil {
		t.Fatalf("after a release: %v", err)
	}
	r2()
	r3()
	if l.InUse() != 0 {
		t.Fatalf("in use %d after releasing all", l.InUse())
	}

	// A waiter ends with its context (the client gone, the server shutting
	// down), and a waiter gets a slot as soon as one is released.
	w := NewAuthLimiter(1, time.Hour)
	r, _ := w.Acquire(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := w.Acquire(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter: %v", err)
	}
	got := make(chan error, 1)
	go func() {
		rel, err := w.Acquire(context.Background())
		if err == nil {
			rel()
		}
		got <- err
	}()
	r()
	if err := <-got; err != nil {
		t.Fatalf("waiter: %v", err)
	}
}

// gatedCheck is a password check that counts the verifications it runs
// and the most that ran at once, and holds each until the gate opens.
type gatedCheck struct {
	gate             chan struct{}
	calls, cur, peak atomic.Int64
}

func newGatedCheck() *gatedCheck { return &gatedCheck{gate: make(chan struct{})} }

func (g *gatedCheck) enter() {
	g.calls.Add(1)
	n := g.cur.Add(1)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			break
		}
	}
}

func (g *gatedCheck) leave() { g.cur.Add(-1) }

func (g *gatedCheck) auth() Authenticator {
	return &PasswordAuth{Insecure: true, Check: func(ctx context.Context, _ *ConnState, user, pass string) error {
		g.enter()
		defer g.leave()
		<-g.gate
		if user == "alice" && pass == "secret" {
			return nil
		}
		return sasl.ErrAuthFailed
	}}
}

// replyCodes collects the first three characters of each final reply.
type replyCodes struct {
	mu sync.Mutex
	m  map[string]int
}

func (r *replyCodes) add(code string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]int{}
	}
	r.m[code]++
}

func (r *replyCodes) get(code string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[code]
}

// dialAuth connects to addr, greets, sends the AUTH line and returns a
// client positioned before the AUTH reply.
func dialAuth(t *testing.T, addr, authLine string) *client {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Error(err)
		return nil
	}
	t.Cleanup(func() { nc.Close() })
	c := &client{t: t, c: nc, br: bufio.NewReader(nc)}
	c.expect("220")
	c.send("EHLO client.test")
	c.expect("250")
	c.send(authLine)
	return c
}

// readAuthReply reads one reply without a deadline shorter than the
// test's: queued clients wait for a slot.
func readAuthReply(c *client) string {
	c.c.SetReadDeadline(time.Now().Add(time.Minute))
	l, err := c.br.ReadString('\n')
	if err != nil {
		return "EOF"
	}
	return strings.TrimRight(l, "\r\n")
}

// TestAuthConcurrentBudget: 60 clients from one address send a wrong
// AUTH PLAIN at once to a server whose per-address budget is 30 and which
// verifies at most 2 at a time. Failures are reserved before verifying,
// so exactly 30 are verified (535) and the other 30 are refused before
// any check (421); never more than 2 checks ran at once.
func TestAuthConcurrentBudget(t *testing.T) {
	const clients, budget, slots = 60, 30, 2
	g := newGatedCheck()
	s := &Server{
		Hostname: "mx.test", Backend: newFakeBackend(), Auth: g.auth(),
		AuthFailureDelay: -1, MaxAuthFailuresPerIP: budget,
		AuthLimiter: NewAuthLimiter(slots, time.Minute),
	}
	l := serveTCP(t, s)
	var codes replyCodes
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			c := dialAuth(t, l.Addr().String(), "AUTH PLAIN AGFsaWNlAHdyb25n")
			if c == nil {
				return
			}
			r := readAuthReply(c)
			codes.add(r[:min(len(r), 9)])
		})
	}
	// While the gate is shut, 2 checks run, 28 clients wait for a slot
	// with a failure reserved, and the other 30 are refused.
	waitFor(t, func() bool { return codes.get("421 4.7.0") == clients-budget && g.cur.Load() == slots })
	close(g.gate)
	wg.Wait()
	if n := codes.get("535 5.7.8"); n != budget {
		t.Errorf("%d clients got 535, want %d; replies %v", n, budget, codes.m)
	}
	if n := g.calls.Load(); n != budget {
		t.Errorf("%d verifications ran, want the budget %d", n, budget)
	}
	if p := g.peak.Load(); p > slots {
		t.Errorf("%d verifications at once, limit %d", p, slots)
	}
}

// TestAuthRefund: a verification in flight counts against the budget
// until it succeeds; then the failure is given back.
func TestAuthRefund(t *testing.T) {
	g := newGatedCheck()
	s := &Server{
		Hostname: "mx.test", Backend: newFakeBackend(), Auth: g.auth(),
		AuthFailureDelay: -1, MaxAuthFailuresPerIP: 1,
	}
	addr := serveTCP(t, s).Addr().String()
	a := dialAuth(t, addr, "AUTH PLAIN AGFsaWNlAHNlY3JldA==") // right password, held at the gate
	waitFor(t, func() bool { return g.cur.Load() == 1 })
	b := dialAuth(t, addr, "AUTH PLAIN AGFsaWNlAHdyb25n")
	b.expect("421 4.7.0 mx.test Too many authentication failures from your address")
	b.expectClosed()
	close(g.gate)
	a.expect("235 2.7.0")
	c := dialAuth(t, addr, "AUTH PLAIN AGFsaWNlAHdyb25n")
	c.expect("535 5.7.8") // the success gave its reservation back
	d := dialAuth(t, addr, "AUTH PLAIN AGFsaWNlAHNlY3JldA==")
	d.expect("421 4.7.0") // c's failure stays counted
	if n := g.calls.Load(); n != 2 {
		t.Errorf("%d verifications, want 2 (a and c)", n)
	}
}

// TestAuthQueueTimeout: a client that waits for a slot longer than the
// queue timeout gets 454 4.7.0, keeps its connection and budget, and
// succeeds once a slot is free.
func TestAuthQueueTimeout(t *testing.T) {
	g := newGatedCheck()
	s := &Server{
		Hostname: "mx.test", Backend: newFakeBackend(), Auth: g.auth(),
		AuthFailureDelay: -1, MaxAuthFailuresPerIP: 2, MaxAuthFailures: 1,
		MaxAuthVerifications: 1, AuthQueueTimeout: 10 * time.Millisecond,
	}
	addr := serveTCP(t, s).Addr().String()
	a := dialAuth(t, addr, "AUTH PLAIN AGFsaWNlAHNlY3JldA==")
	waitFor(t, func() bool { return g.cur.Load() == 1 })
	b := dialAuth(t, addr, "AUTH PLAIN AGFsaWNlAHNlY3JldA==")
	b.expect("454 4.7.0 Too many authentications in progress, try again later")
	close(g.gate)
	a.expect("235 2.7.0")
	b.send("AUTH PLAIN AGFsaWNlAHNlY3JldA==")
	b.expect("235 2.7.0")
	if n := g.calls.Load(); n != 2 {
		t.Errorf("%d verifications, want 2", n)
	}
}

// countingAuth wraps an Authenticator and counts the SCRAM proofs it
// evaluates (each exchange's second step), with the most at once.
type countingAuth struct {
	inner Authenticator
	g     *gatedCheck
}

func (a countingAuth) Mechanisms(c *ConnState) []string { return a.inner.Mechanisms(c) }

func (a countingAuth) NewServer(ctx context.Context, c *ConnState, mech string) (SASLServer, error) {
	s, err := a.inner.NewServer(ctx, c, mech)
	if err != nil {
		return nil, err
	}
	return &countingServer{SASLServer: s, g: a.g}, nil
}

type countingServer struct {
	SASLServer
	g    *gatedCheck
	step int
}

func (s *countingServer) Next(resp []byte) ([]byte, bool, error) {
	s.step++
	if s.step == 2 {
		s.g.enter()
		defer s.g.leave()
		<-s.g.gate
	}
	return s.SASLServer.Next(resp)
}

// TestAuthConcurrentScram: 300 clients from one address send a wrong
// SCRAM-SHA-256 proof at once; the budget is 30 and 2 steps run at a time.
// Exactly 30 proofs are evaluated, every other client is refused with 421
// before its proof is looked at.
func TestAuthConcurrentScram(t *testing.T) {
	const clients, budget, slots = 300, 30, 2
	creds, err := sasl.NewScramCredentials("pencil")
	if err != nil {
		t.Fatal(err)
	}
	store, err := sasl.NewStore(map[string]sasl.User{"user": {Scram: &creds}})
	if err != nil {
		t.Fatal(err)
	}
	g := newGatedCheck()
	s := &Server{
		Hostname: "mx.test", Backend: newFakeBackend(), Auth: countingAuth{storeAuth{store}, g},
		AuthFailureDelay: -1, MaxAuthFailuresPerIP: budget,
		AuthLimiter: NewAuthLimiter(slots, time.Minute),
	}
	addr := serveTCP(t, s).Addr().String()
	var codes replyCodes
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			nonce := make([]byte, 18)
			rand.Read(nonce)
			cnonce := base64.RawStdEncoding.EncodeToString(nonce)
			c := dialAuth(t, addr, "AUTH SCRAM-SHA-256 "+base64.StdEncoding.EncodeToString([]byte("n,,n=user,r="+cnonce)))
			if c == nil {
				return
			}
			r := readAuthReply(c)
			if !strings.HasPrefix(r, "334 ") {
				codes.add(r[:min(len(r), 9)])
				return
			}
			first, _ := base64.StdEncoding.DecodeString(r[4:])
			_, after, _ := strings.Cut(string(first), "r=")
			snonce, _, _ := strings.Cut(after, ",")
			proof := make([]byte, 32) // a wrong proof of the right length
			rand.Read(proof)
			c.send(base64.StdEncoding.EncodeToString([]byte("c=biws,r=" + snonce + ",p=" + base64.StdEncoding.EncodeToString(proof))))
			r = readAuthReply(c)
			codes.add(r[:min(len(r), 9)])
		})
	}
	waitFor(t, func() bool { return codes.get("421 4.7.0") == clients-budget && g.cur.Load() == slots })
	close(g.gate)
	wg.Wait()
	if n := g.calls.Load(); n != budget {
		t.Errorf("%d proofs evaluated, want the budget %d; replies %v", n, budget, codes.m)
	}
	if n := codes.get("535 5.7.8"); n != budget {
		t.Errorf("%d clients got 535, want %d; replies %v", n, budget, codes.m)
	}
	if p := g.peak.Load(); p > slots {
		t.Errorf("%d proofs at once, limit %d", p, slots)
	}
}

// TestAuthMemoryCeiling verifies real argon2id hashes for many clients at
// once and checks the process's peak resident memory against the ceiling
// documented on Server.MaxAuthVerifications: 2 × slots × m, plus the
// connections' buffers and a margin for the runtime. Without the limiter
// the clients would need clients × m at once.
func TestAuthMemoryCeiling(t *testing.T) {
	if testing.Short() {
		t.Skip("computes argon2id hashes")
	}
	const clients, slots = 24, 2
	const m = 16 << 10 // KiB: 16 MiB per verification
	hash, err := sasl.HashPasswordParams("secret", sasl.Argon2Params{Memory: m, Time: 1, Threads: 1, SaltLength: 16, KeyLength: 32})
	if err != nil {
		t.Fatal(err)
	}
	store, err := sasl.NewStore(map[string]sasl.User{"alice": {PasswordHash: hash}})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{
		Hostname: "mx.test", Backend: newFakeBackend(),
		Auth:             &PasswordAuth{Insecure: true, Check: func(_ context.Context, _ *ConnState, u, p string) error { return store.Authenticate(u, p) }},
		AuthFailureDelay: -1, MaxAuthFailuresPerIP: -1,
		AuthLimiter: NewAuthLimiter(slots, time.Minute),
	}
	addr := serveTCP(t, s).Addr().String()
	runtime.GC()
	base := resetPeakRSS(t)
	var codes replyCodes
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			c := dialAuth(t, addr, "AUTH PLAIN AGFsaWNlAHdyb25n")
			if c != nil {
				r := readAuthReply(c)
				codes.add(r[:min(len(r), 9)])
			}
		})
	}
	wg.Wait()
	peak := readStatusKiB(t, "VmHWM")
	if n := codes.get("535 5.7.8"); n != clients {
		t.Fatalf("%d of %d clients got 535: %v", n, clients, codes.m)
	}
	growth := (peak - base) << 10
	ceiling := int64(2*slots*m<<10) + clients*64<<10
	const margin = 48 << 20 // goroutine stacks, runtime
	if raceEnabled {
		// The race detector keeps two bytes of shadow per byte of Go
		// memory written (ThreadSanitizer's kShadowMultiplier), and
		// argon2id writes all of m: the resident figure is three times
		// the Go memory. Twice was not enough: under load (GC running
		// late on 2 busy cores) the growth reached 150 MiB of the 179
		// allowed, with 73 MiB of 113 in the same runs without -race.
		// Three times is still far below unlimited verifications
		// (clients × m, tripled).
		ceiling *= 3
	}
	t.Logf("peak RSS grew %d MiB over %d MiB; ceiling %d MiB (+%d MiB margin); unlimited would need %d MiB",
		growth>>20, base>>10, ceiling>>20, margin>>20, clients*m>>10)
	if growth > ceiling+margin {
		t.Errorf("peak RSS grew by %d MiB, ceiling %d MiB + %d MiB margin", growth>>20, ceiling>>20, margin>>20)
	}
}

// resetPeakRSS resets the process's peak resident set size (VmHWM) to the
// current one (Linux proc(5), clear_refs "5") and returns that, in KiB.
func resetPeakRSS(t *testing.T) int64 {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot reset the peak RSS: %v", err)
		}
		t.Skipf("SKIP: cannot reset the peak RSS (needs Linux /proc): %v", err)
	}
	return readStatusKiB(t, "VmHWM")
}

// readStatusKiB reads a "Name: N kB" line of /proc/self/status.
func readStatusKiB(t *testing.T, name string) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/self/status", name)
	return 0
}

// TestAuthQueuedMemory: 1,000 clients send AUTH at once to a server with
// 2 verification slots, both held; the 998 others wait with a failure
// reserved. What each waiting connection costs the server (heap and
// goroutine stacks) stays within the 64 KiB per connection of the
// ceiling documented on Server.MaxAuthVerifications; the verification
// memory itself is TestAuthMemoryCeiling's.
func TestAuthQueuedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 1,000 connections")
	}
	const clients, slots = 1000, 2
	g := newGatedCheck()
	lim := NewAuthLimiter(slots, time.Minute)
	s := &Server{
		Hostname: "mx.test", Backend: newFakeBackend(), Auth: g.auth(),
		AuthFailureDelay: -1, MaxAuthFailuresPerIP: -1, AuthLimiter: lim,
	}
	addr := serveTCP(t, s).Addr().String()
	var before, during runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	conns := make([]*client, clients)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() { conns[i] = dialAuth(t, addr, "AUTH PLAIN AGFsaWNlAHdyb25n") })
	}
	wg.Wait()
	waitFor(t, func() bool { return g.cur.Load() == slots && lim.Waiting() == clients-slots })
	runtime.GC()
	runtime.ReadMemStats(&during)
	close(g.gate)
	var codes replyCodes
	for _, c := range conns {
		if c != nil {
			r := readAuthReply(c)
			codes.add(r[:min(len(r), 9)])
			c.c.Close()
		}
	}
	if n := codes.get("535 5.7.8"); n != clients {
		t.Errorf("%d of %d clients got 535: %v", n, clients, codes.m)
	}
	if p := g.peak.Load(); p > slots {
		t.Errorf("%d verifications at once, limit %d", p, slots)
	}
	// Both ends of each connection live in this process: the client's
	// side (a bufio.Reader of 4 KiB, its socket) is counted too.
	used := int64(during.HeapInuse+during.StackInuse) - int64(before.HeapInuse+before.StackInuse)
	per := used / clients
	t.Logf("%d queued AUTH connections: %d KiB in use, %d KiB each (server and client side)", clients, used>>10, per>>10)
	if per > 64<<10 {
		t.Errorf("%d KiB per queued connection, the documented ceiling counts 64 KiB", per>>10)
	}
}
