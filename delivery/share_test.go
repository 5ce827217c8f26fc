package delivery

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lmtpd/lmtpd/protocol"
)

// outcomeLines returns the outcome lines of the log (at any level), one
// per recipient, decoded.
func outcomeLines(t *testing.T, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(log), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			continue // not one of ours
		}
		if m["msgid"] != nil && m["to"] != nil && m["backend"] != nil {
			out = append(out, m)
		}
	}
	return out
}

// TestWireSharedDestinations: recipients of one transaction that reach the
// same destination are delivered once; each keeps its own reply in LMTP
// and its own outcome line, the later ones naming the recipient whose
// delivery they share. Different folders (details) are different
// destinations.
func TestWireSharedDestinations(t *testing.T) {
	type box struct {
		rel  string // maildir under example.test, folder included
		want int    // messages in new/
	}
	tests := []struct {
		name    string
		proto   protocol.Protocol
		mutate  func(*Config)
		rcpts   []string
		replies []string // prefixes
		boxes   []box
		shared  map[string]string // to → shared_with in the outcome line
	}{
		{
			name: "same RCPT twice", proto: protocol.LMTP,
			rcpts: []string{"u@example.test", "u@example.test"}, replies: []string{"250 2.0.0", "250 2.0.0"},
			boxes:  []box{{"u", 1}},
			shared: map[string]string{"u@example.test": "u@example.test"},
		},
		{
			name: "case of local part and domain", proto: protocol.LMTP,
			rcpts: []string{"u@example.test", "U@EXAMPLE.Test"}, replies: []string{"250 2.0.0", "250 2.0.0"},
			boxes:  []box{{"u", 1}},
			shared: map[string]string{"U@EXAMPLE.Test": "u@example.test"},
		},
		{
			name: "alias and its user", proto: protocol.LMTP,
			rcpts: []string{"team@example.test", "u@example.test"}, replies: []string{"250 2.0.0", "250 2.0.0"},
			boxes:  []box{{"u", 1}},
			shared: map[string]string{"u@example.test": "team@example.test"},
		},
		{
			name: "two aliases of one user", proto: protocol.LMTP,
			rcpts: []string{"team@example.test", "crew@example.test"}, replies: []string{"250 2.0.0", "250 2.0.0"},
			boxes:  []box{{"u", 1}},
			shared: map[string]string{"crew@example.test": "team@example.test"},
		},
		{
			name: "user, then an alias of her and another", proto: protocol.LMTP,
			rcpts: []string{"u@example.test", "both@example.test"}, replies: []string{"250 2.0.0", "250 2.0.0"},
			boxes:  []box{{"u", 1}, {"v", 1}},
			shared: map[string]string{"both@example.test": "u@example.test"},
		},
		{
			name: "details to two folders", proto: protocol.LMTP,
			mutate: func(c *Config) { c.Maildir.DetailFolders, c.Maildir.CreateFolders = true, true },
			rcpts:  []string{"u+x@example.test", "u+y@example.test", "u+x@example.test"}, replies: []string{"250 2.0.0", "250 2.0.0", "250 2.0.0"},
			boxes:  []box{{"u", 0}, {"u/.x", 1}, {"u/.y", 1}},
			shared: map[string]string{"u+x@example.test": "u+x@example.test"},
		},
		{
			name: "details without folders", proto: protocol.LMTP,
			mutate: func(c *Config) { c.Maildir.DetailFolders = false },
			rcpts:  []string{"u+x@example.test", "u+y@example.test"}, replies: []string{"250 2.0.0", "250 2.0.0"},
			boxes: []box{{"u", 1}},
		},
		{
			name: "SMTP: one reply, one copy", proto: protocol.SMTP,
			rcpts: []string{"u@example.test", "team@example.test", "U@example.test"}, replies: []string{"250 2.0.0"},
			boxes:  []box{{"u", 1}},
			shared: map[string]string{"team@example.test": "u@example.test", "U@example.test": "u@example.test"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSieveSetup(t, "u", "v")
			s.cfg.Domains[0].Aliases = map[string][]string{"team": {"u"}, "crew": {"u"}, "both": {"u", "v"}}
			if tt.mutate != nil {
				tt.mutate(&s.cfg)
			}
			got := s.dialogue(t, s.router(t), tt.proto, "sender@remote.test", tt.rcpts, sieveMsg)
			if len(got) != len(tt.replies) {
				t.Fatalf("replies %q, want %d", got, len(tt.replies))
			}
			for i, want := range tt.replies {
				if !strings.HasPrefix(got[i], want) {
					t.Errorf("reply %d: %q, want %s", i, got[i], want)
				}
			}
			for _, b := range tt.boxes {
				if n := len(files(t, s.root, "example.test/"+b.rel, "new")); n != b.want {
					t.Errorf("%s has %d messages, want %d", b.rel, n, b.want)
				}
			}
			lines := outcomeLines(t, s.log.String())
			if len(lines) != len(tt.rcpts) {
				t.Fatalf("%d outcome lines, want one per recipient (%d):\n%s", len(lines), len(tt.rcpts), s.log.String())
			}
			shared := map[string]string{}
			for _, l := range lines {
				if w, ok := l["shared_with"].(string); ok {
					shared[l["to"].(string)] = w
				}
			}
			if len(shared) != len(tt.shared) {
				t.Errorf("shared_with in the outcome lines: %v, want %v", shared, tt.shared)
			}
			for to, w := range tt.shared {
				if shared[to] != w {
					t.Errorf("outcome line of %s: shared_with %q, want %q", to, shared[to], w)
				}
			}
		})
	}
}

// TestWireSharedFailure: a failed delivery is failed for every recipient
// that shares it, with the same code and enhanced code, and a command is
// run once for them.
func TestWireSharedFailure(t *testing.T) {
	tests := []struct {
		name  string
		proto protocol.Protocol
		rcpts []string
		setup func(t *testing.T, s *sieveSetup)
		want  string // the reply, after the code
		runs  int    // command runs, -1 for no command
	}{
		{
			name: "maildir that cannot be made", proto: protocol.LMTP,
			rcpts: []string{"u@example.test", "u@example.test"},
			setup: func(t *testing.T, s *sieveSetup) {
				// A file where u's maildir should be.
				if err := os.MkdirAll(filepath.Join(s.root, "example.test"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(s.root, "example.test", "u"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			runs: -1,
		},
		{name: "command deferring", proto: protocol.LMTP, rcpts: []string{"c@cmd.example", "C@cmd.example", "alias@cmd.example"}, runs: 1},
		{name: "command deferring, SMTP", proto: protocol.SMTP, rcpts: []string{"c@cmd.example", "alias@cmd.example"}, runs: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSieveSetup(t, "u")
			runs := filepath.Join(t.TempDir(), "runs")
			s.cfg.Domains = append(s.cfg.Domains, Domain{
				Name:    "cmd.example",
				Users:   []User{{Name: "c", Route: sh(`echo run >> "$1"; exit 75`, false, runs)}},
				Aliases: map[string][]string{"alias": {"c"}},
			})
			if tt.setup != nil {
				tt.setup(t, s)
			}
			got := s.dialogue(t, s.router(t), tt.proto, "sender@remote.test", tt.rcpts, sieveMsg)
			n := len(tt.rcpts)
			if tt.proto != protocol.LMTP {
				n = 1
			}
			if len(got) != n {
				t.Fatalf("replies %q, want %d", got, n)
			}
			code := func(r string) string {
				// "451 4.3.0 <addr> text": the codes, without the address.
				f := strings.Fields(r)
				if len(f) < 2 {
					return r
				}
				return f[0] + " " + f[1]
			}
			if !strings.HasPrefix(got[0], "4") {
				t.Errorf("first reply %q, want a temporary failure", got[0])
			}
			for i := 1; i < len(got); i++ {
				if code(got[i]) != code(got[0]) {
					t.Errorf("reply %d %q, want the codes of the first, %q", i, got[i], got[0])
				}
			}
			if tt.runs >= 0 {
				b, _ := os.ReadFile(runs)
				if k := strings.Count(string(b), "run"); k != tt.runs {
					t.Errorf("the command ran %d times, want %d", k, tt.runs)
				}
			}
			lines := outcomeLines(t, s.log.String())
			if len(lines) != len(tt.rcpts) {
				t.Fatalf("%d outcome lines, want %d:\n%s", len(lines), len(tt.rcpts), s.log.String())
			}
			for _, l := range lines[1:] {
				if l["status"] != lines[0]["status"] || l["shared_with"] != tt.rcpts[0] {
					t.Errorf("outcome line %v, want status %v shared with %s", l, lines[0]["status"], tt.rcpts[0])
				}
			}
		})
	}
}

// TestWireSharedSieve: a user's script runs once per message however many
// recipients reach the user: one vacation reply, one run counted, and a
// reject answers every recipient that has nothing else. bob+a and bob+b
// are filtered each (the script sees the detail) and still send one reply.
func TestWireSharedSieve(t *testing.T) {
	const vacation = `require "vacation"; vacation :days 1 :addresses "u@example.test" "away";`
	const reject = `require "reject"; reject "not now";`
	tests := []struct {
		name     string
		smtp     bool // SMTP rather than LMTP
		script   string
		rcpts    []string
		replies  []string
		runs     int // script runs (the vacation or reject action counted)
		replied  int // vacation replies sent
		inbox    int // u's INBOX
		inboxOfV int
	}{
		{name: "same RCPT twice", script: vacation, rcpts: []string{"u@example.test", "u@example.test"},
			replies: []string{"250 2.0.0", "250 2.0.0"}, runs: 1, replied: 1, inbox: 1},
		{name: "alias and its user", script: vacation, rcpts: []string{"team@example.test", "u@example.test"},
			replies: []string{"250 2.0.0", "250 2.0.0"}, runs: 1, replied: 1, inbox: 1},
		{name: "user, then an alias of her and another", script: vacation, rcpts: []string{"u@example.test", "both@example.test"},
			replies: []string{"250 2.0.0", "250 2.0.0"}, runs: 1, replied: 1, inbox: 1, inboxOfV: 1},
		{name: "alias of her and another, then the user", script: vacation, rcpts: []string{"both@example.test", "u@example.test"},
			replies: []string{"250 2.0.0", "250 2.0.0"}, runs: 1, replied: 1, inbox: 1, inboxOfV: 1},
		{name: "two details, one folder", script: vacation, rcpts: []string{"u+a@example.test", "u+b@example.test"},
			replies: []string{"250 2.0.0", "250 2.0.0"}, runs: 2, replied: 1, inbox: 1},
		{name: "SMTP, alias, user, alias of her and another", smtp: true, script: vacation,
			rcpts:   []string{"team@example.test", "u@example.test", "both@example.test"},
			replies: []string{"250 2.0.0"}, runs: 1, replied: 1, inbox: 1, inboxOfV: 1},
		{name: "reject, same RCPT twice", script: reject, rcpts: []string{"u@example.test", "U@example.test"},
			replies: []string{"550 5.7.1", "550 5.7.1"}, runs: 1},
		{name: "reject, user then an alias of her and another", script: reject, rcpts: []string{"u@example.test", "both@example.test"},
			replies: []string{"550 5.7.1", "250 2.0.0"}, runs: 1, inboxOfV: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSieveSetup(t, "u", "v")
			s.cfg.Domains[0].Aliases = map[string][]string{"team": {"u"}, "both": {"u", "v"}}
			s.cfg.Maildir.DetailFolders = false // details are for the script alone
			s.script(t, "u", tt.script)
			msg := strings.Replace(sieveMsg, "To: alice@example.test", "To: u@example.test", 1)
			proto := protocol.LMTP
			if tt.smtp {
				proto = protocol.SMTP
			}
			got := s.dialogue(t, s.router(t), proto, "sender@remote.test", tt.rcpts, msg)
			for i, want := range tt.replies {
				if !strings.HasPrefix(got[i], want) {
					t.Errorf("reply %d: %q, want %s", i, got[i], want)
				}
			}
			if n := s.event("vacation") + s.event("reject"); n != tt.runs {
				t.Errorf("u's script ran %d times, want %d", n, tt.runs)
			}
			if n := len(s.sent(t)); n != tt.replied {
				t.Errorf("%d vacation replies sent, want %d", n, tt.replied)
			}
			if n := len(files(t, s.root, "example.test/u", "new")); n != tt.inbox {
				t.Errorf("u's INBOX has %d messages, want %d", n, tt.inbox)
			}
			if n := len(files(t, s.root, "example.test/v", "new")); n != tt.inboxOfV {
				t.Errorf("v's INBOX has %d messages, want %d", n, tt.inboxOfV)
			}
		})
	}
}

// keyTarget is a Target whose key is the destination's address, for
// share's table; it is never staged.
type keyTarget struct{}

func (keyTarget) Kind() string                                                     { return "key" }
func (keyTarget) Key(d *Destination) string                                        { return strings.ToLower(d.Address) }
func (keyTarget) Group(*Destination) string                                        { return "" }
func (keyTarget) Stage(context.Context, *Message, []*Destination, []Result) Staged { return nil }

// TestShare: which recipients share which destinations, from the
// destinations each resolved to ("addr" or "addr+detail", the detail
// being part of the destination).
func TestShare(t *testing.T) {
	tests := []struct {
		name  string
		rcpts [][]string
		same  []int   // nil: no sharing at all
		after [][]int // recipients each waits for
		own   [][]string
	}{
		{name: "distinct", rcpts: [][]string{{"a"}, {"b"}, {"c"}}},
		{name: "one recipient", rcpts: [][]string{{"a", "a"}}},
		{name: "alias of a user twice", rcpts: [][]string{{"a", "a"}, {"b"}}},
		{name: "same twice", rcpts: [][]string{{"a"}, {"A"}},
			same: []int{-1, 0}, after: [][]int{nil, {0}}, own: [][]string{{"a"}, nil}},
		{name: "third like the first", rcpts: [][]string{{"a"}, {"b"}, {"a"}},
			same: []int{-1, -1, 0}, after: [][]int{nil, nil, {0}}, own: [][]string{{"a"}, {"b"}, nil}},
		{name: "same set in another order", rcpts: [][]string{{"a", "b"}, {"b", "a", "b"}},
			same: []int{-1, 0}, after: [][]int{nil, {0}}, own: [][]string{{"a", "b"}, nil}},
		{name: "user, then an alias of her and another", rcpts: [][]string{{"a"}, {"a", "b"}},
			same: []int{-1, -1}, after: [][]int{nil, {0}}, own: [][]string{{"a"}, {"b"}}},
		{name: "an alias, then its users", rcpts: [][]string{{"a", "b"}, {"b"}, {"a"}},
			same: []int{-1, -1, -1}, after: [][]int{nil, {0}, {0}}, own: [][]string{{"a", "b"}, nil, nil}},
		{name: "shares with two", rcpts: [][]string{{"b"}, {"a"}, {"a", "b", "c"}},
			same: []int{-1, -1, -1}, after: [][]int{nil, nil, {0, 1}}, own: [][]string{{"b"}, {"a"}, {"c"}}},
		{name: "details differ", rcpts: [][]string{{"a+x"}, {"a+y"}}},
		{name: "details equal", rcpts: [][]string{{"a+x"}, {"a+x"}},
			same: []int{-1, 0}, after: [][]int{nil, {0}}, own: [][]string{{"a+x"}, nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in [][]Destination
			for _, ds := range tt.rcpts {
				var r []Destination
				for _, a := range ds {
					addr, detail, _ := strings.Cut(a, "+")
					r = append(r, Destination{Target: keyTarget{}, Address: addr, Resolution: Resolution{Detail: detail}})
				}
				in = append(in, r)
			}
			out, sh := share(in)
			if tt.same == nil {
				if sh != nil {
					t.Fatalf("sharing %+v, want none", sh)
				}
				return
			}
			if sh == nil {
				t.Fatal("no sharing found")
			}
			if !slices.Equal(sh.same, tt.same) {
				t.Errorf("same %v, want %v", sh.same, tt.same)
			}
			for i := range tt.rcpts {
				if !slices.Equal(sh.after[i], tt.after[i]) {
					t.Errorf("recipient %d waits for %v, want %v", i, sh.after[i], tt.after[i])
				}
				var own []string
				for _, d := range out[i] {
					if d.unit == 0 {
						t.Errorf("recipient %d: own destination %s without a unit", i, d.Address)
					}
					a := d.Address
					if d.Detail != "" {
						a += "+" + d.Detail
					}
					own = append(own, a)
				}
				if !slices.Equal(own, tt.own[i]) {
					t.Errorf("recipient %d filtered for %v, want %v", i, own, tt.own[i])
				}
			}
		})
	}
}

// TestWireSharedRemote: recipients that reach one address on one proxied
// server are one RCPT there; each gets the server's answer for it in its
// own reply (an alias of it and another user the worse of the two).
func TestWireSharedRemote(t *testing.T) {
	tests := []struct {
		name   string
		refuse map[string]string
		want   []string // replies of alice, ALICE, team (alice, carol), dave
	}{
		{
			name: "delivered",
			want: []string{"250 2.0.0 <alice@example.org>", "250 2.0.0 <ALICE@example.org>", "250 2.0.0 <team@example.org>", "250 2.0.0 <dave@example.org>"},
		},
		{
			name:   "refused for a while",
			refuse: map[string]string{"alice@example.org": "452 4.2.2 <alice@example.org> Mailbox is full"},
			want: []string{"452 4.2.2 <alice@example.org> Mailbox is full", "452 4.2.2 <ALICE@example.org> Mailbox is full",
				"452 4.2.2 <team@example.org> Mailbox is full", "250 2.0.0 <dave@example.org>"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newFakeLMTP(t, "a"), newFakeLMTP(t, "b")
			for k, v := range tt.refuse {
				a.refuse[k] = v
			}
			w := startWire(t, proxyRouter(t, a.Addr, b.Addr, LMTP{}))
			_, final := lmtpTx(w, []string{"alice@example.org", "ALICE@example.org", "team@example.org", "dave@example.org"}, "Subject: x\r\n\r\nbody")
			if len(final) != len(tt.want) {
				t.Fatalf("final replies %q, want %d", final, len(tt.want))
			}
			for i, want := range tt.want {
				if !strings.HasPrefix(final[i], want) {
					t.Errorf("reply %d: %q, want %s", i, final[i], want)
				}
			}
			_, ca, _ := a.snapshot()
			_, cb, _ := b.snapshot()
			if countPrefix(ca, "RCPT") != 2 || countPrefix(cb, "RCPT") != 1 {
				t.Errorf("RCPTs: a %q (want alice and dave once), b %q (want carol)", ca, cb)
			}
		})
	}
}
