package protocol

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/lmtpd/lmtpd/internal/wiretest"
	"github.com/rs/zerolog"
)

func TestParseXClient(t *testing.T) {
	start := XClient{Sent: XClientName, Name: "old.example"}
	tests := []struct {
		name string
		arg  string
		want XClient // the result, applied to start
		err  string  // the reply, if refused
	}{
		{"all", "NAME=c.example ADDR=192.0.2.1 PORT=25 PROTO=esmtp HELO=h.example LOGIN=bob DESTADDR=IPV6:2001:db8::1 DESTPORT=587 TTL=4",
			XClient{Sent: XClientName | XClientAddr | XClientPort | XClientProto | XClientHelo | XClientLogin | XClientDestAddr | XClientDestPort | XClientTTL,
				Name: "c.example", Addr: netip.MustParseAddr("192.0.2.1"), Port: 25, Proto: "ESMTP", Helo: "h.example", Login: "bob",
				DestAddr: netip.MustParseAddr("2001:db8::1"), DestPort: 587, TTL: 4}, ""},
		{"accumulates", "ADDR=192.0.2.1", XClient{Sent: XClientName | XClientAddr, Name: "old.example", Addr: netip.MustParseAddr("192.0.2.1")}, ""},
		{"later wins", "ADDR=192.0.2.1 ADDR=192.0.2.2", XClient{Sent: XClientName | XClientAddr, Name: "old.example", Addr: netip.MustParseAddr("192.0.2.2")}, ""},
		{"unavailable", "NAME=[unavailable]", XClient{Sent: XClientName}, ""},
		{"tempunavail", "NAME=[TEMPUNAVAIL]", XClient{Sent: XClientName}, ""},
		{"mapped v4", "ADDR=::ffff:192.0.2.1", XClient{Sent: XClientName | XClientAddr, Name: "old.example", Addr: netip.MustParseAddr("192.0.2.1")}, ""},
		{"xtext", "LOGIN=a+2Bb+3Dc", XClient{Sent: XClientName | XClientLogin, Name: "old.example", Login: "a+b=c"}, ""},
		{"utf8 helo", "HELO=h+C3+A9.example", XClient{Sent: XClientName | XClientHelo, Name: "old.example", Helo: "hé.example"}, ""},
		{"lmtp proto", "PROTO=LMTP", XClient{Sent: XClientName | XClientProto, Name: "old.example", Proto: "LMTP"}, ""},
		{"ttl zero", "TTL=0", XClient{Sent: XClientName | XClientTTL, Name: "old.example"}, ""},
		{"empty", "", XClient{}, "501 5.5.4 Syntax: XCLIENT attribute=value ..."},
		{"no value", "NAME=", XClient{}, "501 5.5.4 Syntax: XCLIENT attribute=value ..."},
		{"unknown", "FOO=1", XClient{}, "501 5.5.4 Unknown XCLIENT attribute: FOO"},
		{"unknown unprintable", "F\xffO=1", XClient{}, "501 5.5.4 Unknown XCLIENT attribute: (unprintable)"},
		{"tempunavail addr", "ADDR=[TEMPUNAVAIL]", XClient{}, "501 5.5.4 Bad XCLIENT value for ADDR"},
		{"zone", "ADDR=fe80::1+25lo", XClient{}, "501 5.5.4 Bad XCLIENT value for ADDR"},
		{"v6 prefix on v4", "ADDR=IPv6:192.0.2.1", XClient{}, "501 5.5.4 Bad XCLIENT value for ADDR"},
		{"port", "PORT=123456", XClient{}, "501 5.5.4 Bad XCLIENT value for PORT"},
		{"ttl", "TTL=-1", XClient{}, "501 5.5.4 Bad XCLIENT value for TTL"},
		{"name chars", "NAME=a_b-c.example NAME=a+2Cb", XClient{}, "501 5.5.4 Bad XCLIENT value for NAME"},
		{"long", "LOGIN=" + strings.Repeat("x", 256), XClient{}, "501 5.5.4 Bad XCLIENT value for LOGIN"},
		{"all or nothing", "NAME=new.example PROTO=X", XClient{}, "501 5.5.4 Bad XCLIENT value for PROTO"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := start
			err := parseXClient(tt.arg, &x)
			if tt.err != "" {
				e := AsError(err)
				if e == nil || e.Error() != tt.err {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				if x != start {
					t.Fatalf("refused command changed the attributes: %+v", x)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if x != tt.want {
				t.Fatalf("got %+v\nwant %+v", x, tt.want)
			}
		})
	}
}

func FuzzParseXClient(f *testing.F) {
	for _, s := range []string{
		"NAME=c.example ADDR=192.0.2.1 PORT=25 PROTO=ESMTP HELO=h.example",
		"LOGIN=alice+40example.org DESTADDR=IPV6:2001:db8::1 DESTPORT=24 TTL=5",
		"ADDR=[UNAVAILABLE] NAME=[tempunavail] HELO=[unavailable]", "ADDR=2001:db8::1",
		"NAME=a+2", "HELO=a+0D+0Ab", "HELO=h+C3+A9", "X=1", "NAME", "=", "ADDR=fe80::1+25eth0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		var x XClient
		err := parseXClient(arg, &x)
		if err != nil {
			e := AsError(err)
			if e == nil || e.Code != CodeParamSyntax || e.EnhancedCode != ECPermInvalidArgs || !isPrintableText(e.Message) {
				t.Fatalf("parseXClient(%q) error %v", arg, err)
			}
			if x != (XClient{}) {
				t.Fatalf("refused %q but set %+v", arg, x)
			}
			return
		}
		if x.Sent == 0 || x.Sent&^(XClientTTL<<1-1) != 0 {
			t.Fatalf("Sent %b from %q", x.Sent, arg)
		}
		// Everything accepted can go into a header as it is.
		for _, v := range []string{x.Name, x.Helo, x.Login, x.Proto} {
			if v != "" && (!isHeaderWord(v, true) || len(v) > maxXClientValue || !utf8.ValidString(v)) {
				t.Fatalf("value %q accepted from %q", v, arg)
			}
		}
		if strings.ContainsAny(x.Name, "()[];") {
			t.Fatalf("name %q accepted from %q", x.Name, arg)
		}
		if x.Addr.Zone() != "" || x.Addr.Is4In6() || x.Port > 65535 || x.DestPort > 65535 || x.TTL > 65535 || x.Port < 0 || x.TTL < 0 {
			t.Fatalf("%+v accepted from %q", x, arg)
		}
		if x.String() == "" || strings.ContainsAny(x.String(), " \r\n") {
			t.Fatalf("String() = %q", x.String())
		}
	})
}

// TestXClientSession checks what a session looks like to the backend and
// in the log after XCLIENT: the claimed client in RemoteAddr, Hostname,
// AuthIdentity, the Received field and the log lines, the real peer in
// PeerAddr and in the log; and that STARTTLS forgets it.
func TestXClientSession(t *testing.T) {
	var buf wiretest.LogBuffer
	log := zerolog.New(&buf).Level(zerolog.DebugLevel)
	b := newFakeBackend()
	s := &Server{Protocol: LMTP, Hostname: "mx.test", Software: "lmtpd", Backend: b, Logger: &log,
		TLSConfig: testTLSConfig(t), TrustedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	l := serveTCP(t, s)
	nc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := newClient(t, nc)
	c.expect("220 mx.test LMTP")
	c.send("LHLO proxy.test")
	if r := c.expect("250"); !strings.Contains(r, "\n250 XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT TTL") {
		t.Fatalf("XCLIENT not offered last: %q", r)
	}
	c.send("XCLIENT NAME=client.example ADDR=IPV6:2001:db8::5 PORT=4711 PROTO=ESMTP HELO=helo.example LOGIN=alice DESTADDR=192.0.2.25 DESTPORT=25 TTL=3")
	c.expect("220 mx.test LMTP lmtpd ready")
	c.send("LHLO proxy.test")
	c.expect("250")
	c.send("MAIL FROM:<a@example.org>", "RCPT TO:<forward-x@example.test>", "DATA")
	c.expect("250 2.1.0")
	c.expect("250 2.1.5")
	c.expect("354")
	c.send("Subject: s", "", "x", ".")
	c.expect("250 2.0.0")

	msgs := b.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	st := m.Conn
	if got, want := st.RemoteAddr.String(), "[2001:db8::5]:4711"; got != want {
		t.Errorf("RemoteAddr %s, want %s", got, want)
	}
	if st.PeerAddr.String() != nc.LocalAddr().String() {
		t.Errorf("PeerAddr %s, want the socket's peer %s", st.PeerAddr, nc.LocalAddr())
	}
	if st.LocalAddr.String() != nc.RemoteAddr().String() {
		t.Errorf("LocalAddr %s, want the socket's %s", st.LocalAddr, nc.RemoteAddr())
	}
	if st.Hostname != "helo.example" || !st.ESMTP || st.AuthIdentity != "alice" {
		t.Errorf("Hostname %q ESMTP %v AuthIdentity %q", st.Hostname, st.ESMTP, st.AuthIdentity)
	}
	x := st.XClient
	if x.Name != "client.example" || x.Proto != "ESMTP" || x.DestAddr != netip.MustParseAddr("192.0.2.25") || x.DestPort != 25 || !x.Has(XClientTTL|XClientLogin) || x.TTL != 3 {
		t.Errorf("XClient %+v", x)
	}
	if m.ProxyTTL != 2 {
		t.Errorf("ProxyHop gave TTL %d after TTL=3, want 2", m.ProxyTTL)
	}
	rcv := m.Header.Get("Received")
	for _, want := range []string{"from helo.example (client.example [2001:db8::5])", "by mx.test (lmtpd) with LMTPA"} {
		if !strings.Contains(rcv, want) {
			t.Errorf("Received %q lacks %q", rcv, want)
		}
	}

	// STARTTLS forgets XCLIENT (RFC 3207 section 4.2).
	c.send("STARTTLS")
	c.expect("220 2.0.0")
	c = c.upgradeTLS(nc)
	c.send("LHLO proxy.test", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.test>", "DATA")
	c.expect("250")
	c.expect("250 2.1.0")
	c.expect("250 2.1.5")
	c.expect("354")
	c.send("Subject: s", "", "x", ".", "QUIT")
	c.expect("250 2.0.0")
	c.expect("221")
	m = b.messages()[1]
	if !m.Conn.XClient.IsZero() || m.Conn.RemoteAddr.String() != nc.LocalAddr().String() || m.Conn.AuthIdentity != "" || m.Conn.Hostname != "proxy.test" {
		t.Errorf("after STARTTLS: %+v", m.Conn)
	}
	if rcv := m.Header.Get("Received"); !strings.Contains(rcv, "from proxy.test ([127.0.0.1])") {
		t.Errorf("Received after STARTTLS: %q", rcv)
	}
	s.Close()

	// Log lines after XCLIENT carry the real peer and the claimed client;
	// those after STARTTLS only the peer.
	var sawClient bool
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		hasClient := strings.Contains(line, `"client":"client.example[2001:db8::5]:4711"`)
		if !strings.Contains(line, `"peer":"127.0.0.1:`) || !strings.Contains(line, `"session":"`) {
			t.Errorf("log line without session or real peer: %s", line)
		}
		switch {
		case strings.Contains(line, `"message":"XCLIENT"`):
			sawClient = hasClient
		case strings.Contains(line, `"message":"connection closed"`):
			if hasClient {
				t.Errorf("client still logged after STARTTLS: %s", line)
			}
		}
	}
	if !sawClient {
		t.Errorf("the XCLIENT line does not name the client:\n%s", buf.String())
	}
}

// TestXClientPortOnly: a PORT without ADDR keeps the socket's address.
func TestXClientPortOnly(t *testing.T) {
	_, b, nc := testServer(t, LMTP, "tcp", []string{"trusted"})
	c := newClient(t, nc)
	c.expect("220")
	c.send("XCLIENT PORT=2525")
	c.expect("220")
	c.send("LHLO p", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.test>", "DATA")
	c.expect("250")
	c.expect("250")
	c.expect("250")
	c.expect("354")
	c.send("x", ".")
	c.expect("250")
	if got := b.messages()[0].Conn.RemoteAddr.String(); got != "127.0.0.1:2525" {
		t.Errorf("RemoteAddr %s", got)
	}
}

func TestProxyHop(t *testing.T) {
	rcv := func(by, software string) string {
		return "Received: from x.test ([192.0.2.1])\r\n\tby " + by + " (" + software + ") with LMTP\r\n\tid 1; Sun, 06 Dec 2026 03:00:00 +0000\r\n"
	}
	own := rcv("me.test", "lmtpd")
	msg := func(top string, fields ...string) *Message {
		raw := top + strings.Join(fields, "") + "Subject: s\r\n\r\n"
		return &Message{hdr: &headerState{raw: []byte(raw), top: len(top), own: ownMarker("lmtpd")}}
	}
	lm := rcv("f.test", "lmtpd")
	pf := rcv("mx.test", "Postfix")
	withTTL := func(n int) *ConnState {
		return &ConnState{XClient: XClient{Sent: XClientTTL, TTL: n}}
	}
	tests := []struct {
		name string
		conn *ConnState
		msg  *Message
		ttl  int
		loop bool
	}{
		{"nothing", nil, nil, DefaultProxyTTL, false},
		{"no ttl", &ConnState{XClient: XClient{Sent: XClientAddr}}, nil, DefaultProxyTTL, false},
		{"ttl 0", withTTL(0), nil, 0, true},
		{"ttl 1", withTTL(1), nil, 0, false},
		{"ttl 9", withTTL(9), nil, 8, false},
		{"own field not counted", nil, msg(own, pf, lm), DefaultProxyTTL, false},
		{"two fronts", nil, msg(own, lm, lm, pf), DefaultProxyTTL - 2, false},
		{"five fronts", nil, msg("", lm, lm, lm, lm, lm), 0, false},
		{"six fronts", nil, msg(own, lm, lm, lm, lm, lm, lm), 0, true},
		{"a foreign hop breaks the run", nil, msg(own, lm, pf, lm, lm, lm, lm, lm, lm), DefaultProxyTTL - 1, false},
		{"smaller of the two", withTTL(9), msg(own, lm, lm, lm), DefaultProxyTTL - 3, false},
		{"ttl 0 and no fronts", withTTL(0), msg(own), 0, true},
		{"header of a local delivery", nil, &Message{}, DefaultProxyTTL, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ttl, err := ProxyHop(tt.conn, tt.msg)
			if tt.loop {
				if err != ErrProxyLoop {
					t.Fatalf("got %d, %v; want ErrProxyLoop", ttl, err)
				}
				return
			}
			if err != nil || ttl != tt.ttl {
				t.Fatalf("got %d, %v; want %d", ttl, err, tt.ttl)
			}
		})
	}
	if e := ErrProxyLoop; e.Code != 554 || e.EnhancedCode != (EnhancedCode{5, 4, 6}) {
		t.Errorf("ErrProxyLoop is %v", e)
	}
}

// TestProxyHopChain follows a message through fronts that each stamp
// their Received field and pass TTL on, and through fronts that cannot
// pass TTL: both refuse at the same hop.
func TestProxyHopChain(t *testing.T) {
	for _, carryTTL := range []bool{true, false} {
		var header string
		conn := &ConnState{}
		hops := 0
		for ; hops < 20; hops++ {
			own := "Received: from p ([192.0.2.1])\r\n\tby f" + string(rune('a'+hops)) + ".test (lmtpd) with LMTP\r\n\tid 1; Sun, 06 Dec 2026 03:00:00 +0000\r\n"
			m := &Message{hdr: &headerState{raw: []byte(own + header), top: len(own), own: ownMarker("lmtpd")}}
			ttl, err := ProxyHop(conn, m)
			if err != nil {
				break
			}
			header = own + header
			if carryTTL {
				conn = &ConnState{XClient: XClient{Sent: XClientTTL, TTL: ttl}}
			}
		}
		if hops != DefaultProxyTTL+1 {
			t.Errorf("carry TTL %v: the message was handed on %d times, want %d", carryTTL, hops, DefaultProxyTTL+1)
		}
	}
}

func TestIsOwnReceived(t *testing.T) {
	for s, want := range map[string]bool{
		"Received: from a (b [1.2.3.4])\r\n\tby mx.test (lmtpd) with LMTP\r\n\tid x; date\r\n": true,
		"Received: from a\r\n by mx.test (lmtpd) with ESMTPS (TLS1.3)\r\n":                     true,
		"Received: from a (b [1.2.3.4])\r\n\tby mx.test (Postfix) with LMTP\r\n":               false,
		"Received: from x (lmtpd) with LMTP\r\n":                                               false,
		"Received: by (lmtpd) with LMTP\r\n":                                                   false,
	} {
		if got := isOwnReceived([]byte(s), ownMarker("lmtpd")); got != want {
			t.Errorf("isOwnReceived(%q) = %v", s, got)
		}
	}
}

// TestXClientPerIPLimit: the connection limit per address keeps counting
// the socket's peer after XCLIENT names another client, and releases the
// peer's slot when the connection ends.
func TestXClientPerIPLimit(t *testing.T) {
	s := &Server{Hostname: "mx.test", Backend: newFakeBackend(), MaxConnectionsPerIP: 1, limitLoopback: true,
		TrustedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	l := serveTCP(t, s)
	nc1, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c1 := newClient(t, nc1)
	c1.expect("220")
	c1.send("XCLIENT ADDR=192.0.2.7")
	c1.expect("220")
	nc2, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	c2 := newClient(t, nc2)
	c2.expect("421 4.7.0")
	c2.expectClosed()
	c1.send("QUIT")
	c1.expect("221")
	c1.expectClosed()
	nc1.Close()
	var nc3 net.Conn
	waitFor(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.perIP) == 0
	})
	nc3, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc3.Close()
	newClient(t, nc3).expect("220 ")
}
