package ldap

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/lmtpd/lmtpd/directory"
)

// newRecord builds a Record from result fields by name. It knows the
// contract's field names; anything else goes to Extra. A quota, uid or
// gid that is not a decimal number is an error naming the field (the
// directory's data is broken: a temporary failure, never "no such
// user"). Once the directory package offers a shared constructor for
// result fields, this should defer to it.
func newRecord(fields map[string]string, trusted bool) (directory.Record, error) {
	r := directory.Record{UID: -1, GID: -1, Trusted: trusted}
	for name, v := range fields {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		var err error
		switch name {
		case "mailbox":
			r.Mailbox = v
		case "home":
			r.Home = v
		case "sieve":
			r.Sieve = v
		case "forward":
			r.Forward = v
		case "quota_bytes":
			r.QuotaBytes, err = parseLimit(v)
		case "quota_messages":
			r.QuotaMessages, err = parseLimit(v)
		case "uid":
			r.UID, err = parseID(v)
		case "gid":
			r.GID, err = parseID(v)
		default:
			if r.Extra == nil {
				r.Extra = map[string]string{}
			}
			r.Extra[name] = v
		}
		if err != nil {
			return directory.Record{}, fmt.Errorf("field %s: %w", name, err)
		}
	}
	return r, nil
}

// parseLimit reads a non-negative decimal count (0 means unlimited).
func parseLimit(v string) (directory.Limit, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return directory.Limit{}, fmt.Errorf("not a non-negative decimal number")
	}
	return directory.Limit{Value: n, Set: true}, nil
}

// parseID reads a uid or gid.
func parseID(v string) (int, error) {
	n, err := strconv.ParseUint(v, 10, 31)
	if err != nil {
		return 0, fmt.Errorf("not a decimal id")
	}
	return int(n), nil
}
