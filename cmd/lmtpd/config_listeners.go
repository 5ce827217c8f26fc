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
	if len(c.Listeners) == 0 {
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

		if oneOf(ec, key("tls"), l.TLS, tlsModes) && l.TLS != "none" {
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
		positive := func(k string, v int) {
			if v <= 0 {
				ec.addf(key(k), "must be a positive number, not %d", v)
			}
		}
		positive("max_recipients", l.MaxRecipients)
		positive("max_line_length", l.MaxLineLength)
		positive("max_received_headers", l.MaxReceivedHeaders)
		positive("max_errors", l.MaxErrors)
		positive("max_connections", l.MaxConnections)
		positive("max_auth_failures", l.MaxAuthFailures)
		if l.MaxLineLength > 0 && l.MaxLineLength < protocol.DefaultMaxLineLength {
			ec.addf(key("max_line_length"), "%d is below the 512 octets RFC 5321 section 4.5.3.1.4 requires", l.MaxLineLength)
		}
		if l.MaxTextLineLength < 0 {
			ec.addf(key("max_text_line_length"), "must not be negative (0 means no limit)")
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
		for k, v := range map[string]int{"max_connections_per_ip": *l.MaxConnectionsPerIP,
			"max_refused_recipients": l.MaxRefusedRcpts, "min_data_rate": l.MinDataRate} {
			if v < 0 {
				ec.addf(key(k), "must not be negative (0 means no limit)")
			}
		}
		if l.MaxAuthFailuresIP < 0 {
			ec.addf(key("max_auth_failures_per_ip"), "must not be negative (0 means no limit)")
		}
		if l.MaxHeaderSize <= 0 {
			ec.addf(key("max_header_size"), "must be positive")
		}
		for k, d := range map[string]duration{
			"command_timeout": l.CommandTimeout, "data_timeout": l.DataTimeout,
			"final_reply_timeout": l.FinalReplyTimeout, "tls_handshake_timeout": l.TLSHandshakeTimeout,
			"auth_failure_window": l.AuthFailureWindow,
		} {
			if d <= 0 {
				ec.addf(key(k), "must be positive")
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

func lookupUID(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		return n, nil
	}
	u, err := user.Lookup(s)
	if err != nil {
		return 0, fmt.Errorf("no such user %q", s)
	}
	return strconv.Atoi(u.Uid)
}

func lookupGID(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		return n, nil
	}
	g, err := user.LookupGroup(s)
	if err != nil {
		return 0, fmt.Errorf("no such group %q", s)
	}
	return strconv.Atoi(g.Gid)
}
