package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/lmtpd/lmtpd/delivery"
	"github.com/lmtpd/lmtpd/protocol"
	"github.com/lmtpd/lmtpd/socketmap"
)

// Socketmap table names, as Postfix names them after the socket path
// (socketmap:unix:/path:NAME, socketmap_table(5)).
const (
	socketmapDomain  = "domain"  // virtual_mailbox_domains
	socketmapMailbox = "mailbox" // virtual_mailbox_maps
	socketmapAlias   = "alias"   // virtual_alias_maps
)

// resolver is the part of delivery.Router the socketmap tables ask.
type resolver interface {
	Resolve(ctx context.Context, addr protocol.Address) ([]delivery.Destination, error)
	Serves(domain string) bool
}

// socketmapHandler answers Postfix's lookups from lmtpd's routing, so that
// Postfix refuses at RCPT what lmtpd would refuse, with one source of
// truth:
//
//   - domain: "OK" for a domain lmtpd serves, else NOTFOUND.
//   - mailbox: for an address lmtpd delivers to itself (a user, of the
//     configuration or a directory, an any-user domain), "OK" and the
//     maildir path under the maildir root with a trailing slash (Postfix's
//     maildir convention), or the address for a destination that is not a
//     maildir (a pipe, a remote server); NOTFOUND otherwise, aliases
//     included (Postfix resolves them with the alias table first).
//   - alias: for an alias or a catch-all, its targets, comma-separated
//     (virtual(5)); NOTFOUND for users and unknown addresses.
//
// A lookup that fails for now (a directory down) is TEMP, never NOTFOUND:
// Postfix then defers with 451 4.3.0 instead of bouncing. An unknown table
// name is PERM. Keys that are not addresses (Postfix also asks "user"
// and "@domain" in virtual_alias_maps) are NOTFOUND.
type socketmapHandler struct {
	r resolver
}

func (h *socketmapHandler) Lookup(ctx context.Context, mapName, key string) (string, error) {
	switch mapName {
	case socketmapDomain:
		if h.r.Serves(key) {
			return "", nil
		}
		return "", socketmap.ErrNotFound
	case socketmapMailbox, socketmapAlias:
	default:
		return "", fmt.Errorf("%w: unknown table %q (want %s, %s or %s)", socketmap.ErrBadRequest, mapName, socketmapDomain, socketmapMailbox, socketmapAlias)
	}
	addr, err := protocol.ParseAddress(key)
	if err != nil || strings.HasPrefix(key, "@") {
		return "", socketmap.ErrNotFound
	}
	ds, err := h.r.Resolve(ctx, addr)
	if err != nil {
		if pe := protocol.AsError(err); pe == nil || pe.Temporary() {
			return "", socketmap.Temporary("lookup failed, try again later", err)
		}
		return "", socketmap.ErrNotFound
	}
	self := len(ds) == 1 && strings.EqualFold(ds[0].Address, addr.String())
	if mapName == socketmapMailbox {
		if !self {
			return "", socketmap.ErrNotFound
		}
		if d := ds[0]; d.Mailbox != "" {
			return d.Mailbox + "/", nil
		}
		return ds[0].Address, nil
	}
	if self {
		return "", socketmap.ErrNotFound
	}
	targets := make([]string, 0, len(ds))
	for _, d := range ds {
		if !containsFold(targets, d.Address) {
			targets = append(targets, d.Address)
		}
	}
	if len(targets) == 0 {
		return "", errors.New("lmtpd: an alias resolved to no target")
	}
	return strings.Join(targets, ","), nil
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}
