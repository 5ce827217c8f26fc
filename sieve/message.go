package sieve

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"strings"
	"time"
)

// HeaderField is one header field as it stands in the message: Name as
// written (any case), Value everything after the colon up to the final
// line end, still folded and not decoded.
type HeaderField struct {
	Name  string
	Value string
}

// Message is the message a script runs against. Execute calls it from one
// goroutine only and never keeps it after returning.
type Message interface {
	// Header returns the header fields in message order. The slice is
	// only read.
	Header() []HeaderField
	// Size is the message size in octets (RFC 5228 section 5.9), header
	// and body.
	Size() int64
	// Body returns the raw body (after the empty line that ends the
	// header). It may be called more than once; each call returns a
	// reader from the start.
	Body() (io.Reader, error)
}

// Envelope is the SMTP/LMTP envelope of one recipient (RFC 5228 section
// 5.4).
type Envelope struct {
	// From is the reverse-path without angle brackets; "" is the null
	// sender.
	From string
	// To is the recipient (RCPT TO) this delivery is for.
	To string
	// OrigTo is the original recipient from ORCPT (RFC 3461), when the
	// client sent one; envelope "to" uses it when set (Postfix sends the
	// address the user wrote before its rewriting there).
	OrigTo string
	// Auth is the authenticated submitter (envelope "auth"), if known.
	Auth string
}

// Tracker answers "seen before?" for vacation (RFC 5230 section 4.2) and
// duplicate (RFC 7352). The interpreter only asks; the caller records a
// key with Mark after it carried out the actions (a Vacation's TrackKey
// after the reply was sent, Result.Marks after a successful delivery).
type Tracker interface {
	// Seen reports whether key was marked less than period ago.
	Seen(ctx context.Context, key string, period time.Duration) (bool, error)
}

// MailboxChecker answers mailboxexists (RFC 5490 section 3.1) for the
// user the script runs for.
type MailboxChecker interface {
	MailboxExists(ctx context.Context, name string) (bool, error)
}

// SpecialUseChecker is an optional ability of a MailboxChecker, found by
// type assertion, for RFC 8579: does a mailbox carry all the given
// special-use attributes (RFC 6154), or, with mailbox "", does some
// mailbox carry each of them? Without it specialuse_exists is false and
// fileinto :specialuse uses the named mailbox.
type SpecialUseChecker interface {
	SpecialUseExists(ctx context.Context, mailbox string, attrs []string) (bool, error)
}

// MetadataReader is an optional ability of a MailboxChecker, found by type
// assertion, for the metadata tests of RFC 5490 section 4: the value of an
// IMAP METADATA entry (RFC 5464) of a mailbox, or of the server when
// mailbox is "". Without it the metadata tests are false.
type MetadataReader interface {
	Metadata(ctx context.Context, mailbox, entry string) (value string, ok bool, err error)
}

// Location says where include looks (RFC 6609 section 3.2).
type Location int

const (
	Personal Location = iota // the user's own scripts
	Global                   // the administrator's shared scripts
)

func (l Location) String() string {
	if l == Global {
		return "global"
	}
	return "personal"
}

// ScriptLoader loads a script for include. It returns ErrNotFound (or an
// error wrapping it) for a script that does not exist; it may cache the
// compiled scripts. name has passed validScriptName: no "/", no leading
// ".", no control characters.
type ScriptLoader interface {
	LoadScript(ctx context.Context, loc Location, name string) (*Script, error)
}

// Env is what a script sees of its surroundings besides the message: the
// envelope, the clock, the environment items and the I/O the interpreter
// may ask for through small interfaces. Nil interfaces mean "not
// available": mailboxexists, specialuse_exists and the metadata tests are
// false, duplicate is false, a vacation is listed as if the sender had
// never been answered, include is a run-time error.
type Env struct {
	Envelope Envelope
	// Now is the time of delivery (currentdate, vacation); zero means
	// time.Now().
	Now time.Time
	// Location is the local time zone for date tests without :zone;
	// nil means time.Local.
	Location *time.Location
	// Environment holds RFC 5183 items ("domain", "host", "remote-host",
	// "remote-ip", ...); "name", "version", "location" and "phase" have
	// defaults.
	Environment map[string]string
	Tracker     Tracker
	Mailboxes   MailboxChecker
	Loader      ScriptLoader
	// UserAddresses are further addresses of the user for the vacation
	// rules of RFC 5230 section 4.5 (besides the envelope recipient and
	// :addresses).
	UserAddresses []string
	// CharsetReader converts text in other charsets to UTF-8 for RFC 2047
	// words and body parts; nil handles UTF-8, US-ASCII and ISO-8859-1
	// only (pass go-message's charset.Reader for the rest).
	CharsetReader func(charset string, input io.Reader) (io.Reader, error)
}

// ParseMessage splits a message into header fields and body, leniently:
// a line without a colon in the header is skipped, a message without an
// empty line is all header. The returned Message reads from data, which
// the caller must not change while it is in use.
func ParseMessage(data []byte) Message {
	m := &bytesMessage{data: data}
	rest := data
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		var line []byte
		if i < 0 {
			line, rest = rest, nil
		} else {
			line, rest = rest[:i+1], rest[i+1:]
		}
		trimmed := bytes.TrimRight(line, "\r\n")
		if len(trimmed) == 0 {
			m.body = rest
			return m
		}
		if (trimmed[0] == ' ' || trimmed[0] == '\t') && len(m.hdr) > 0 {
			f := &m.hdr[len(m.hdr)-1]
			f.Value += "\r\n" + string(trimmed)
			continue
		}
		c := bytes.IndexByte(trimmed, ':')
		if c <= 0 {
			continue
		}
		name := string(bytes.TrimRight(trimmed[:c], " \t"))
		m.hdr = append(m.hdr, HeaderField{Name: name, Value: string(trimmed[c+1:])})
	}
	return m
}

type bytesMessage struct {
	data []byte
	hdr  []HeaderField
	body []byte
}

func (m *bytesMessage) Header() []HeaderField    { return m.hdr }
func (m *bytesMessage) Size() int64              { return int64(len(m.data)) }
func (m *bytesMessage) Body() (io.Reader, error) { return bytes.NewReader(m.body), nil }

// unfold removes the line breaks of a folded value and trims the white
// space around it (RFC 5228 section 5.7: leading and trailing white space
// is not part of the value; RFC 5322 section 2.2.3 unfolding).
func unfold(v string) string {
	if strings.ContainsAny(v, "\r\n") {
		// A tab that starts a continuation line becomes a space, as
		// Pigeonhole unfolds.
		v = foldReplacer.Replace(v)
	}
	return strings.Trim(v, " \t")
}

var foldReplacer = strings.NewReplacer("\r\n\t", " ", "\n\t", " ", "\r\n", "", "\n", "", "\r", "")

// decodeHeader unfolds a raw value and decodes RFC 2047 encoded words
// (RFC 5228 section 2.7.2); a value that does not decode stays raw.
//
// A value that needs work (folded, or with encoded words) is decoded once
// per run: the same Subject is often tested by several rules.
func (r *run) decodeHeader(v string) string {
	if out, ok := recall(r.decoded, v); ok {
		return out
	}
	u := unfold(v)
	if !strings.Contains(u, "=?") {
		if strings.ContainsAny(v, "\r\n") { // unfolding made a copy
			r.decoded = remember(r.decoded, v, u)
		}
		return u
	}
	d := mime.WordDecoder{CharsetReader: r.charsetReader}
	out, err := d.DecodeHeader(u)
	if err != nil {
		out = u
	}
	r.decoded = remember(r.decoded, v, out)
	return out
}

// memo is one remembered result for a raw header value.
type memo[T any] struct {
	raw string
	val T
}

// maxMemo bounds each of a run's memo lists (decodeHeader's,
// addressList's): past it, values are worked out again.
const maxMemo = 64

// recall finds raw in l. The values come from the message's fields, so
// a value asked for again is mostly the very same string, which == tells
// at once.
func recall[T any](l []memo[T], raw string) (T, bool) {
	for i := range l {
		if l[i].raw == raw {
			return l[i].val, true
		}
	}
	var zero T
	return zero, false
}

func remember[T any](l []memo[T], raw string, val T) []memo[T] {
	if len(l) >= maxMemo {
		return l
	}
	return append(l, memo[T]{raw, val})
}

// addressList returns parseAddressList(unfold(raw)), parsed once per run
// for each raw value (address tests of several rules read the same From).
// The slice is shared: callers only read it.
func (r *run) addressList(raw string) []address {
	if l, ok := recall(r.addrs, raw); ok {
		return l
	}
	l := parseAddressList(unfold(raw))
	l = l[:len(l):len(l)] // an append by a caller copies
	r.addrs = remember(r.addrs, raw, l)
	return l
}

func (r *run) charsetReader(cs string, in io.Reader) (io.Reader, error) {
	if r.env.CharsetReader != nil {
		return r.env.CharsetReader(cs, in)
	}
	return nil, errors.New("unknown charset " + cs)
}

// address is one address found in a header (RFC 5322 section 3.4).
type address struct {
	raw    string // the addr-spec, or the whole element when it did not parse
	local  string
	domain string
	valid  bool
}

// parseAddressList splits an address-list leniently: display names,
// comments, quoted strings, groups and route addresses are tolerated, and
// an element that is not an addr-spec is kept raw (RFC 5228 section 5.1:
// it then only matches with :all).
func parseAddressList(v string) []address {
	var out []address
	// cur collects the element outside angle brackets, angle the text
	// inside them; both without comments.
	var cbuf, abuf [64]byte
	cur, angle := textBuf{b: cbuf[:0]}, textBuf{b: abuf[:0]}
	depth, inQuote, inAngle := 0, false, false
	hadAngle := false
	flush := func() {
		var el string
		if hadAngle {
			el = angle.text(v)
			// A route ("@a,@b:user@host") is dropped (RFC 5322 section 4.4).
			if strings.HasPrefix(el, "@") {
				if i := strings.IndexByte(el, ':'); i >= 0 {
					el = el[i+1:]
				}
			}
		} else {
			el = cur.text(v)
		}
		cur = cur.reset()
		empty := hadAngle && el == ""
		hadAngle = false
		angle = angle.reset()
		if empty {
			// "<>", the null address: only :all sees it, as "<>".
			out = append(out, address{raw: "<>"})
			return
		}
		if el == "" {
			return
		}
		out = append(out, splitAddr(el))
	}
	for i := 0; i < len(v); i++ {
		ch := v[i]
		switch {
		case inQuote:
			if ch == '\\' && i+1 < len(v) {
				if inAngle {
					angle = angle.add(v, i, i+2)
				} else {
					cur = cur.add(v, i, i+2)
				}
				i++
				continue
			}
			if ch == '"' {
				inQuote = false
			}
			if inAngle {
				angle = angle.add(v, i, i+1)
			} else {
				cur = cur.add(v, i, i+1)
			}
		case depth > 0:
			if ch == '\\' {
				i++
			} else if ch == '(' {
				depth++
			} else if ch == ')' {
				depth--
			}
		case ch == '(':
			depth = 1
		case ch == '"':
			inQuote = true
			if inAngle {
				angle = angle.add(v, i, i+1)
			} else {
				cur = cur.add(v, i, i+1)
			}
		case inAngle:
			if ch == '>' {
				inAngle = false
			} else {
				angle = angle.add(v, i, i+1)
			}
		case ch == '<':
			inAngle, hadAngle = true, true
			angle = angle.reset()
		case ch == ',':
			flush()
		case ch == ':' && !hadAngle:
			// A group's display name ends here (RFC 5322 section 3.4).
			cur = cur.reset()
		case ch == ';':
			flush()
		default:
			cur = cur.add(v, i, i+1)
		}
	}
	flush()
	return out
}

// textBuf collects pieces of a string v. While they are one run of v
// (no comment or group name cut out), text returns a substring of v, not
// a copy: most addresses are written without comments.
type textBuf struct {
	b          []byte
	start, end int  // the run of v that b holds, while contig
	contig     bool // b == v[start:end]
}

func (t textBuf) add(v string, i, j int) textBuf {
	switch {
	case len(t.b) == 0:
		t.start, t.end, t.contig = i, j, true
	case t.contig && t.end == i:
		t.end = j
	default:
		t.contig = false
	}
	t.b = append(t.b, v[i:j]...)
	return t
}

func (t textBuf) reset() textBuf {
	t.b = t.b[:0]
	return t
}

// text returns the collected text without the white space around it.
func (t textBuf) text(v string) string {
	if len(t.b) == 0 {
		return ""
	}
	if t.contig {
		return strings.TrimSpace(v[t.start:t.end])
	}
	return string(bytes.TrimSpace(t.b))
}

// splitAddr splits an addr-spec at its last "@".
func splitAddr(s string) address {
	a := address{raw: s}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return a
	}
	local, domain := strings.TrimSpace(s[:at]), strings.TrimSpace(s[at+1:])
	if strings.HasPrefix(local, "\"") && strings.HasSuffix(local, "\"") && len(local) >= 2 {
		local = unquote(local[1 : len(local)-1])
	} else if hasAny(local, &localSpecials) {
		return a
	}
	if domain == "" || hasAny(domain, &domainSpecials) {
		return a
	}
	a.local, a.domain, a.valid = local, domain, true
	if len(local)+1+len(domain) != len(s) {
		// Trimmed or unquoted: local and domain are no longer s's
		// halves (when they are, s is already their join).
		a.raw = local + "@" + domain
	}
	if hasAny(local, &rawSpecials) {
		a.raw = s
	}
	return a
}

// byteSet is a set of ASCII bytes, for hasAny.
type byteSet [256]bool

func newByteSet(chars string) (s byteSet) {
	for i := 0; i < len(chars); i++ {
		s[chars[i]] = true
	}
	return s
}

// The characters splitAddr looks for, as sets made once (strings.ContainsAny
// makes its set at every call).
var (
	localSpecials  = newByteSet(" \t\"<>()[]")
	domainSpecials = newByteSet(" \t\"<>()@,;")
	rawSpecials    = newByteSet(" \"\\")
)

// hasAny is strings.ContainsAny(s, chars) for the ASCII chars of set.
func hasAny(s string, set *byteSet) bool {
	for i := 0; i < len(s); i++ {
		if set[s[i]] {
			return true
		}
	}
	return false
}

func unquote(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

var errBadAddress = errors.New("invalid address")

// parseMailbox accepts one address ("user@example.org", optionally in
// angle brackets or with a display name) and returns its addr-spec.
func parseMailbox(s string) (string, error) {
	if plainAddrSpec(s) {
		return s, nil // what the general path below gives, without its copies
	}
	l := parseAddressList(s)
	if len(l) != 1 || !l[0].valid || strings.ContainsAny(s, ",;") {
		return "", errBadAddress
	}
	for _, r := range l[0].raw {
		if r < 0x20 || r == 0x7f {
			return "", errBadAddress
		}
	}
	return l[0].raw, nil
}

// plainAddrSpec reports whether s is a bare "local@domain" of printable
// ASCII without any character that parseAddressList or splitAddr treats
// specially (white space, quotes, comments, angle brackets, groups,
// separators, escapes, domain literals), with something on both sides of
// its last "@". parseMailbox returns such an s unchanged.
func plainAddrSpec(s string) bool {
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f {
			return false
		}
		switch c {
		case '"', '(', ')', '<', '>', '[', ']', ',', ';', ':', '\\':
			return false
		}
	}
	return true
}

// NewMessage builds a Message from what a caller already holds: the parsed
// header, the total size, and a function that opens the body from its
// start (a spool file, for example). body is called at most once per
// Execute, and only when a body test runs.
func NewMessage(hdr []HeaderField, size int64, body func() (io.Reader, error)) Message {
	return &partsMessage{hdr: hdr, size: size, body: body}
}

type partsMessage struct {
	hdr  []HeaderField
	size int64
	body func() (io.Reader, error)
}

func (m *partsMessage) Header() []HeaderField    { return m.hdr }
func (m *partsMessage) Size() int64              { return m.size }
func (m *partsMessage) Body() (io.Reader, error) { return m.body() }
