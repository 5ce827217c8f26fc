package directory

import (
	"fmt"
	"math"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/rs/zerolog"
)

// The result field names of the configuration contract: SQL column
// names, LDAP attribute mapping keys, passwd-file userdb_NAME fields.
// FieldMail and FieldQuotaRule are Dovecot's names, accepted so that
// queries from a dovecot-sql.conf.ext work unchanged.
const (
	FieldNameMailbox       = "mailbox"
	FieldNameHome          = "home"
	FieldNameQuotaBytes    = "quota_bytes"
	FieldNameQuotaMessages = "quota_messages"
	FieldNameSieve         = "sieve"
	FieldNameForward       = "forward"
	FieldNamePassword      = "password"
	FieldNameUID           = "uid"
	FieldNameGID           = "gid"
	FieldNameMail          = "mail"       // Dovecot mail_location: "maildir:~/Maildir"
	FieldNameQuotaRule     = "quota_rule" // Dovecot: "*:storage=1G:messages=1000"
)

// KnownField reports whether name is a result field lmtpd uses.
func KnownField(name string) bool {
	switch name {
	case FieldNameMailbox, FieldNameHome, FieldNameQuotaBytes, FieldNameQuotaMessages, FieldNameSieve,
		FieldNameForward, FieldNamePassword, FieldNameUID, FieldNameGID, FieldNameMail, FieldNameQuotaRule:
		return true
	}
	return false
}

// NewRecord builds a Record for the user k names from result fields by
// name (names compared without regard to case). Fields lmtpd does not know go to Extra and
// are also returned, sorted, so the driver can warn about them once;
// "password" is not a user field and is ignored here. Empty values
// (SQL NULL, a missing attribute) leave the field unset.
//
// The values of Dovecot's fields (home, mail, sieve, quota_rule) may use
// Dovecot's variables, expanded for k: %u (the address), %n (the local
// part), %d (the domain), %h (the home; not in home itself), %% and the
// L modifier (%Ln), or %{user}, %{username}, %{domain}, %{home}. After
// all fields are set, a "~" or "~/" at the start of mailbox or sieve
// stands for the home directory, as in Dovecot; with no home it is an
// error. A value that does not parse (a quota that is not a number,
// a mail location that is not maildir) is an error naming the field:
// the directory's data is broken, which callers treat as a temporary
// failure, never as "no such user".
func NewRecord(k Key, fields map[string]string) (Record, []string, error) {
	r := Record{UID: -1, GID: -1}
	var unknown []string
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	sort.Strings(names) // deterministic: quota_rule before quota_bytes would matter otherwise
	// Explicit fields win over Dovecot's composite ones.
	sort.SliceStable(names, func(i, j int) bool { return !composite(names[i]) && composite(names[j]) })
	home, err := ExpandDovecotVars(homeOf(fields), k, "")
	if err != nil {
		return Record{}, nil, fmt.Errorf("field home: %w", err)
	}
	for _, n := range names {
		v := strings.TrimSpace(fields[n])
		ln := strings.ToLower(n)
		if !KnownField(ln) {
			if r.Extra == nil {
				r.Extra = make(map[string]string)
			}
			r.Extra[n] = fields[n]
			unknown = append(unknown, n)
			continue
		}
		if v == "" {
			continue
		}
		if dovecotField(ln) {
			h := home
			if ln == FieldNameHome {
				h = ""
			}
			var err error
			if v, err = ExpandDovecotVars(v, k, h); err != nil {
				return Record{}, unknown, fmt.Errorf("field %s: %w", ln, err)
			}
		}
		if err := r.set(ln, v); err != nil {
			return Record{}, unknown, err
		}
	}
	for _, p := range []*string{&r.Mailbox, &r.Sieve} {
		exp, err := expandHome(*p, r.Home)
		if err != nil {
			return Record{}, unknown, err
		}
		*p = exp
	}
	sort.Strings(unknown)
	return r, unknown, nil
}

// dovecotField reports whether the field is one whose values Dovecot
// expands variables in (and so may hold them in a ported setup).
func dovecotField(n string) bool {
	switch n {
	case FieldNameHome, FieldNameMail, FieldNameSieve, FieldNameQuotaRule:
		return true
	}
	return false
}

// homeOf returns the home field's raw value for %h, or "".
func homeOf(fields map[string]string) string {
	for n, v := range fields {
		if strings.EqualFold(n, FieldNameHome) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// ExpandDovecotVars expands the Dovecot variables NewRecord documents in
// v for k; home is the value of %h ("" makes %h an error). An unknown
// variable is an error naming it, so a ported setting that needs one
// lmtpd does not have is caught instead of written into a path.
func ExpandDovecotVars(v string, k Key, home string) (string, error) {
	if !strings.Contains(v, "%") {
		return v, nil
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			b.WriteByte(v[i])
			continue
		}
		i++
		if i >= len(v) {
			return "", fmt.Errorf("%q ends with a lone %%", v)
		}
		var name string
		lower := false
		if v[i] == 'L' && i+1 < len(v) {
			lower = true
			i++
		}
		switch {
		case v[i] == '{':
			end := strings.IndexByte(v[i:], '}')
			if end < 0 {
				return "", fmt.Errorf("unterminated %%{ in %q", v)
			}
			name = strings.TrimSpace(v[i+1 : i+end])
			i += end
		default:
			name = v[i : i+1]
		}
		var val string
		switch name {
		case "%":
			val = "%"
		case "u", "user":
			val = k.Address
		case "n", "username":
			val = k.LocalPart
		case "d", "domain":
			val = k.Domain
		case "h", "home":
			if home == "" {
				return "", fmt.Errorf("%%%s in %q: the user has no home", name, v)
			}
			val = home
		default:
			return "", fmt.Errorf("variable %%%s in %q is not supported (of Dovecot's variables lmtpd knows %%u %%n %%d %%h)", name, v)
		}
		if lower {
			val = strings.ToLower(val)
		}
		b.WriteString(val)
	}
	return b.String(), nil
}

func composite(n string) bool {
	n = strings.ToLower(n)
	return n == FieldNameMail || n == FieldNameQuotaRule
}

func (r *Record) set(name, v string) error {
	var err error
	switch name {
	case FieldNameMailbox:
		r.Mailbox = v
	case FieldNameMail:
		if r.Mailbox == "" {
			r.Mailbox, err = ParseMailLocation(v)
		}
	case FieldNameHome:
		r.Home = v
	case FieldNameQuotaBytes:
		var n int64
		n, err = ParseSize(v, 1)
		r.QuotaBytes = Limit{Value: n, Set: true}
	case FieldNameQuotaMessages:
		var n int64
		n, err = ParseSize(v, 1)
		r.QuotaMessages = Limit{Value: n, Set: true}
	case FieldNameQuotaRule:
		var b, m Limit
		b, m, err = ParseQuotaRule(v)
		if b.Set && !r.QuotaBytes.Set {
			r.QuotaBytes = b
		}
		if m.Set && !r.QuotaMessages.Set {
			r.QuotaMessages = m
		}
	case FieldNameSieve:
		r.Sieve = parseSieveLocation(v)
	case FieldNameForward:
		r.Forward = v
	case FieldNameUID:
		r.UID, err = parseID(v)
	case FieldNameGID:
		r.GID, err = parseID(v)
	case FieldNamePassword:
	}
	if err != nil {
		return fmt.Errorf("field %s = %q: %w", name, v, err)
	}
	return nil
}

func parseID(v string) (int, error) {
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil || n < 0 {
		return -1, fmt.Errorf("not a numeric id")
	}
	return int(n), nil
}

// expandHome replaces a leading "~" of p with home.
func expandHome(p, home string) (string, error) {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p, nil
	}
	if home == "" {
		return "", fmt.Errorf("%q refers to the home directory (~), but the user has no home", p)
	}
	return path.Join(home, p[1:]), nil
}

var sizeSuffix = map[byte]int64{'b': 1, 'B': 1, 'k': 1 << 10, 'K': 1 << 10, 'm': 1 << 20, 'M': 1 << 20,
	'g': 1 << 30, 'G': 1 << 30, 't': 1 << 40, 'T': 1 << 40}

// ParseSize parses a size with Dovecot's suffixes: b (bytes), k, M, G,
// T (powers of 1024, either case). A number without suffix is multiplied
// by unit (1 for byte fields, 1024 for quota_rule's storage, which
// Dovecot counts in kilobytes).
func ParseSize(s string, unit int64) (int64, error) {
	s = strings.TrimSpace(s)
	mult := unit
	if s != "" {
		if m, ok := sizeSuffix[s[len(s)-1]]; ok {
			mult, s = m, s[:len(s)-1]
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("not a size (a number with an optional b, k, M, G or T suffix)")
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size out of range")
	}
	return n * mult, nil
}

// ParseQuotaRule reads the limits of a Dovecot quota rule for the whole
// mailbox: "*:storage=1G", "*:bytes=1073741824", "*:messages=1000",
// "*:storage=1G:messages=1000", "*:ignore" (unlimited). storage without
// suffix is in kilobytes, bytes in bytes. Rules for one folder
// ("Trash:storage=+100M") and relative or percentage limits have no
// meaning for a per-user limit and are errors, so the caller can keep
// them as an unknown field instead.
func ParseQuotaRule(v string) (bytes, messages Limit, err error) {
	root, rest, _ := strings.Cut(strings.TrimSpace(v), ":")
	if root != "*" {
		return Limit{}, Limit{}, fmt.Errorf("only the mailbox-wide rule (*:...) sets a user's quota")
	}
	for item := range strings.SplitSeq(rest, ":") {
		k, val, _ := strings.Cut(item, "=")
		switch k = strings.ToLower(strings.TrimSpace(k)); {
		case k == "ignore" || k == "noenforcing":
			bytes, messages = Limit{Value: 0, Set: true}, Limit{Value: 0, Set: true}
			continue
		case k == "backend" || k == "":
			continue
		}
		if strings.ContainsAny(val, "+-%") {
			return Limit{}, Limit{}, fmt.Errorf("relative or percentage limit %q", item)
		}
		switch k {
		case "storage", "bytes":
			unit := int64(1024)
			if k == "bytes" {
				unit = 1
			}
			n, err := ParseSize(val, unit)
			if err != nil {
				return Limit{}, Limit{}, fmt.Errorf("%s: %w", k, err)
			}
			bytes = Limit{Value: n, Set: true}
		case "messages":
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil || n < 0 {
				return Limit{}, Limit{}, fmt.Errorf("messages: not a number")
			}
			messages = Limit{Value: n, Set: true}
		default:
			return Limit{}, Limit{}, fmt.Errorf("unknown limit %q", k)
		}
	}
	return bytes, messages, nil
}

// ParseMailLocation returns the maildir path of a Dovecot mail location
// ("maildir:~/Maildir:LAYOUT=fs", 2.4's bare path, "~/Maildir"). Other
// formats (mbox, sdbox, mdbox) are errors: lmtpd writes maildirs only.
func ParseMailLocation(v string) (string, error) {
	format, rest, ok := strings.Cut(v, ":")
	if !ok {
		return v, nil // a bare path
	}
	switch strings.ToLower(format) {
	case "maildir":
		p, _, _ := strings.Cut(rest, ":")
		if p == "" {
			return "", fmt.Errorf("maildir location without a path")
		}
		return p, nil
	case "mbox", "sdbox", "mdbox", "dbox", "imapc", "pop3c", "obox", "cydir":
		return "", fmt.Errorf("mail location format %q is not maildir; lmtpd delivers to maildirs only", format)
	}
	return v, nil // a path with a colon in it
}

// parseSieveLocation returns the active script of a Pigeonhole sieve
// location: "file:~/sieve;active=~/.dovecot.sieve" gives
// "~/.dovecot.sieve"; a plain path is returned as it is.
func parseSieveLocation(v string) string {
	loc, opts, _ := strings.Cut(v, ";")
	for o := range strings.SplitSeq(opts, ";") {
		if a, ok := strings.CutPrefix(o, "active="); ok {
			return a
		}
	}
	if p, ok := strings.CutPrefix(loc, "file:"); ok {
		return p
	}
	return loc
}

// FieldWarner logs each unknown result field name once per directory:
// at load for drivers that see their fields then (passwd-file), at the
// first row that carries it for the others (SQL, LDAP). The zero value
// logs nothing until Log is set; it is safe for concurrent use.
type FieldWarner struct {
	Log       zerolog.Logger
	Directory string

	mu   sync.Mutex
	seen map[string]bool
}

// Warn logs the names in unknown not logged before.
func (w *FieldWarner) Warn(unknown []string) {
	if len(unknown) == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen == nil {
		w.seen = make(map[string]bool)
	}
	for _, n := range unknown {
		if w.seen[n] {
			continue
		}
		w.seen[n] = true
		w.Log.Warn().Str("directory", w.Directory).Str("field", n).
			Msg("result field unknown to lmtpd, ignored (kept in the record's Extra); known: mailbox home quota_bytes quota_messages sieve forward password uid gid mail quota_rule")
	}
}

// Seen reports whether name was warned about, for tests.
func (w *FieldWarner) Seen(name string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen[name]
}
