package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os/user"
	"strconv"
	"strings"

	"github.com/lmtpd/lmtpd/protocol"
)

func (c *config) validateListeners(ec *errorCollector) {
	if len(c.Listeners) == 0 && !c.deliverOnly {
		ec.add("listener", errors.New("at least one [[listener]] is required"))
	}
	names := make(map[string]bool)
	seenProto := make(map[string]bool)
	addrs := make(map[string]string)
	c.trusted = make(map[int][]netip.Prefix)
	needTLS := false
	for i := range c.Listeners {
		l := &c.Listeners[i]
		key := func(k string) string { return joinKey(indexKey("listener", i), k) }
		oneOf(ec, key("protocol"), l.Protocol, protocols)
		if l.Name == "" {
			l.Name = l.Protocol
			if seenProto[l.Protocol] {
				l.Name = l.Protocol + "-" + strconv.Itoa(i+1)
			}
		} else if strings.ContainsFunc(l.Name, func(r rune) bool { return r <= ' ' || r == ':' || r >= 0x7f }) {
			ec.addf(key("name"), "%q: a listener name must be printable ASCII without spaces or colons (systemd FileDescriptorName)", l.Name)
		}
		seenProto[l.Protocol] = true
		if names[l.Name] {
			ec.addf(key("name"), "listener name %q is used twice", l.Name)
		}
		names[l.Name] = true

		if p, ok := l.isUnix(); ok {
			if p == "" {
				ec.add(key("address"), errors.New("unix: needs a socket path"))
			}
			if l.SocketOwner != "" {
				if _, err := lookupUID(l.SocketOwner); err != nil {
					ec.add(key("socket_owner"), err)
				}
			}
			if l.SocketGroup != "" {
				if _, err := lookupGID(l.SocketGroup); err != nil {
					ec.add(key("socket_group"), err)
				}
			}
		} else {
			if l.Address == "" {
				ec.add(key("address"), errors.New(`required: "host:port" or "unix:/path/to/socket"`))
			} else if err := checkTCPAddress(l.Address); err != nil {
				ec.add(key("address"), err)
			}
			if l.SocketOwner != "" {
				ec.add(key("socket_owner"), errors.New("applies only to unix: addresses"))
			}
			if l.SocketGroup != "" {
				ec.add(key("socket_group"), errors.New("applies only to unix: addresses"))
			}
		}
		if other, dup := addrs[l.Address]; dup && l.Address != "" {
			ec.addf(key("address"), "listener %q has the same address", other)
		}
		addrs[l.Address] = l.Name

		if l.Protocol == "socketmap" {
			// Postfix's socketmap client speaks plain netstrings: no TLS,
			// no AUTH (socketmap_table(5)); guard it with the socket's
			// permissions or a loopback address.
			if l.TLS != "none" {
				ec.add(key("tls"), errors.New(`a socketmap listener has no TLS: want "none"`))
			}
			if l.Auth != "off" {
				ec.add(key("auth"), errors.New(`a socketmap listener has no AUTH: want "off"`))
			}
		}
		if oneOf(ec, key("tls"), l.TLS, tlsModes) && l.TLS != "none" && l.Protocol != "socketmap" {
			needTLS = true
		}
		if l.RequireTLS && l.TLS != "starttls" {
			ec.add(key("require_tls"), errors.New(`needs tls = "starttls" (an implicit-TLS listener always has TLS)`))
		}
		oneOf(ec, key("auth"), l.Auth, authModes)
		oneOf(ec, key("bare_line_endings"), l.BareLineEndings, bareEndPolys)
		for j, s := range l.TrustedNetworks {
			p, err := parsePrefix(s)
			if err != nil {
				ec.add(indexKey(key("trusted_networks"), j), err)
				continue
			}
			c.trusted[i] = append(c.trusted[i], p)
		}
		if l.MaxConnectionsPerIP == nil {
			// The default depends on the protocol: an SMTP listener faces
			// clients, an LMTP one the MTAs in front (protocol.Server).
			n := 0
			if l.Protocol == "smtp" {
				n = protocol.DefaultMaxConnectionsPerIP
			}
			l.MaxConnectionsPerIP = &n
		}
		l.checkLimits(func(k string, err error) { ec.add(key(k), err) })
		if l.Protocol == "policy" {
			// Postfix's policy client speaks plain text on a local socket
			// and has no AUTH (policy.go).
			if l.TLS != "none" {
				ec.add(key("tls"), errors.New(`a policy listener has no TLS: want "none"`))
			}
			if l.Auth != "off" {
				ec.add(key("auth"), errors.New(`a policy listener has no AUTH: want "off"`))
			}
		}
	}
	if needTLS {
		if c.TLS.CertFile == "" || c.TLS.KeyFile == "" {
			ec.add("tls", errors.New("a listener uses TLS: [tls] cert_file and key_file are required"))
		} else if _, err := loadCertificate(c.TLS.CertFile, c.TLS.KeyFile); err != nil {
			ec.add("tls.cert_file", err)
		}
	}
}

// parsePrefix parses a trusted network: a CIDR prefix or one address.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a network such as 192.0.2.0/24 or 2001:db8::/32", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or network", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// lookupUID resolves a socket owner: a user id, or a user name.
func lookupUID(s string) (int, error) { return lookupID(s, "user") }

// lookupGID resolves a socket group: a group id, or a group name.
func lookupGID(s string) (int, error) { return lookupID(s, "group") }

// lookupID resolves s, a non-negative number taken as it is or a name in
// the system's user (kind "user") or group database, to its id.
func lookupID(s, kind string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		return n, nil
	}
	var id string
	var err error
	if kind == "user" {
		var u *user.User
		if u, err = user.Lookup(s); err == nil {
			id = u.Uid
		}
	} else {
		var g *user.Group
		if g, err = user.LookupGroup(s); err == nil {
			id = g.Gid
		}
	}
	if err != nil {
		return 0, fmt.Errorf("no such %s %q", kind, s)
	}
	return strconv.Atoi(id)
}

// limitRule is what a listener limit must be.
type limitRule int

const (
	positiveCount limitRule = iota // a count, at least 1
	positiveValue                  // a size or duration, above 0
	noLimitIfZero                  // 0 or more, 0 meaning no limit
)

// checkLimits checks the numeric limits of a listener whose defaults have
// been applied, reporting each problem once through add (key relative to
// the listener). Sizes and durations cannot be negative: their decoders
// refuse that already.
func (l *listenerConfig) checkLimits(add func(key string, err error)) {
	for _, c := range []struct {
		key  string
		v    int64
		rule limitRule
	}{
		{"max_recipients", int64(l.MaxRecipients), positiveCount},
		{"max_line_length", int64(l.MaxLineLength), positiveCount},
		{"max_received_headers", int64(l.MaxReceivedHeaders), positiveCount},
		{"max_errors", int64(l.MaxErrors), positiveCount},
		{"max_connections", int64(l.MaxConnections), positiveCount},
		{"max_auth_failures", int64(l.MaxAuthFailures), positiveCount},
		{"max_text_line_length", int64(l.MaxTextLineLength), noLimitIfZero},
		{"max_connections_per_ip", int64(*l.MaxConnectionsPerIP), noLimitIfZero},
		{"max_refused_recipients", int64(l.MaxRefusedRcpts), noLimitIfZero},
		{"min_data_rate", int64(l.MinDataRate), noLimitIfZero},
		{"max_auth_failures_per_ip", int64(l.MaxAuthFailuresIP), noLimitIfZero},
		{"max_header_size", int64(l.MaxHeaderSize), positiveValue},
		{"command_timeout", int64(l.CommandTimeout), positiveValue},
		{"data_timeout", int64(l.DataTimeout), positiveValue},
		{"final_reply_timeout", int64(l.FinalReplyTimeout), positiveValue},
		{"tls_handshake_timeout", int64(l.TLSHandshakeTimeout), positiveValue},
		{"auth_failure_window", int64(l.AuthFailureWindow), positiveValue},
	} {
		switch {
		case c.rule == positiveCount && c.v <= 0:
			add(c.key, fmt.Errorf("must be a positive number, not %d", c.v))
		case c.rule == positiveValue && c.v <= 0:
			add(c.key, errors.New("must be positive"))
		case c.rule == noLimitIfZero && c.v < 0:
			add(c.key, errors.New("must not be negative (0 means no limit)"))
		}
	}
	if l.MaxLineLength > 0 && l.MaxLineLength < protocol.DefaultMaxLineLength {
		add("max_line_length", fmt.Errorf("%d is below the 512 octets RFC 5321 section 4.5.3.1.4 requires", l.MaxLineLength))
	}
}
