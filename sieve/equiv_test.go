package sieve

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// The functions below are the interpreter's helpers as they were before
// they were made to allocate less: the tests compare the new ones with
// them, so that the speed-up changes no result. One difference is meant:
// the old parseAddressList added a byte inside angle brackets as
// string(ch), which encodes a byte of a UTF-8 character as a character of
// its own ("<jöhn@example.org>" became "jÃ¶hn@example.org"); the copy
// here appends the byte itself, as the new code does and as the old code
// did outside angle brackets (TestAddressNonASCII).

func refEqual(a, b string) bool { return len(a) == len(b) && foldASCII(a) == foldASCII(b) }

func refCompare(a, b string) int { return strings.Compare(foldASCII(a), foldASCII(b)) }

func refContains(hay, needle string) bool {
	return strings.Contains(foldASCII(hay), foldASCII(needle))
}

func refParseMailbox(s string) (string, error) {
	l := refParseAddressList(s)
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

func refParseAddressList(v string) []address {
	var out []address
	var cur strings.Builder
	depth, inQuote, inAngle := 0, false, false
	angle := ""
	hadAngle := false
	flush := func() {
		el := strings.TrimSpace(cur.String())
		if hadAngle {
			el = strings.TrimSpace(angle)
			// A route ("@a,@b:user@host") is dropped (RFC 5322 section 4.4).
			if strings.HasPrefix(el, "@") {
				if i := strings.IndexByte(el, ':'); i >= 0 {
					el = el[i+1:]
				}
			}
		}
		cur.Reset()
		empty := hadAngle && el == ""
		angle, hadAngle = "", false
		if empty {
			// "<>", the null address: only :all sees it, as "<>".
			out = append(out, address{raw: "<>"})
			return
		}
		if el == "" {
			return
		}
		out = append(out, refSplitAddr(el))
	}
	for i := 0; i < len(v); i++ {
		ch := v[i]
		switch {
		case inQuote:
			if ch == '\\' && i+1 < len(v) {
				if inAngle {
					angle += v[i : i+2]
				} else {
					cur.WriteString(v[i : i+2])
				}
				i++
				continue
			}
			if ch == '"' {
				inQuote = false
			}
			if inAngle {
				angle += string([]byte{ch})
			} else {
				cur.WriteByte(ch)
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
				angle += string([]byte{ch})
			} else {
				cur.WriteByte(ch)
			}
		case inAngle:
			if ch == '>' {
				inAngle = false
			} else {
				angle += string([]byte{ch})
			}
		case ch == '<':
			inAngle, hadAngle = true, true
			angle = ""
		case ch == ',':
			flush()
		case ch == ':' && !hadAngle:
			// A group's display name ends here (RFC 5322 section 3.4).
			cur.Reset()
		case ch == ';':
			flush()
		default:
			cur.WriteByte(ch)
		}
	}
	flush()
	return out
}

// splitAddr splits an addr-spec at its last "@".
func refSplitAddr(s string) address {
	a := address{raw: s}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return a
	}
	local, domain := strings.TrimSpace(s[:at]), strings.TrimSpace(s[at+1:])
	if strings.HasPrefix(local, "\"") && strings.HasSuffix(local, "\"") && len(local) >= 2 {
		local = unquote(local[1 : len(local)-1])
	} else if strings.ContainsAny(local, " \t\"<>()[]") {
		return a
	}
	if domain == "" || strings.ContainsAny(domain, " \t\"<>()@,;") {
		return a
	}
	a.local, a.domain, a.valid = local, domain, true
	a.raw = local + "@" + domain
	if strings.ContainsAny(local, " \"\\") {
		a.raw = s
	}
	return a
}

func refVacationAllowed(hdr []HeaderField, sender string, mine []string) (bool, string) {
	sender = strings.Trim(strings.TrimSpace(sender), "<>")
	if sender == "" {
		return false, "null envelope sender"
	}
	local := strings.ToLower(sender)
	if i := strings.LastIndexByte(local, '@'); i >= 0 {
		local = local[:i]
	}
	switch {
	case local == "mailer-daemon", local == "listserv", local == "majordomo",
		strings.HasPrefix(local, "owner-"), strings.HasSuffix(local, "-request"):
		return false, "sender " + sender + " is a list or system address"
	}
	for _, m := range mine {
		if m != "" && strings.EqualFold(strings.Trim(m, "<>"), sender) {
			return false, "sender is the user"
		}
	}
	named := false
	for _, h := range hdr {
		name := strings.ToLower(h.Name)
		v := unfold(h.Value)
		switch name {
		case "auto-submitted":
			// RFC 3834 section 5: anything but "no" is automatic.
			if !strings.EqualFold(strings.TrimSpace(strings.SplitN(v, ";", 2)[0]), "no") {
				return false, "message is Auto-Submitted: " + v
			}
		case "precedence":
			switch strings.ToLower(strings.TrimSpace(v)) {
			case "bulk", "list", "junk":
				return false, "message has Precedence: " + v
			}
		case "list-id", "list-help", "list-unsubscribe", "list-subscribe", "list-post", "list-owner", "list-archive":
			// RFC 2919, RFC 2369: mailing list traffic.
			return false, "message is from a mailing list (" + h.Name + ")"
		case "x-auto-response-suppress":
			lv := strings.ToLower(v)
			if strings.Contains(lv, "all") || strings.Contains(lv, "oof") {
				return false, "message has X-Auto-Response-Suppress: " + v
			}
		case "to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc":
			for _, a := range refParseAddressList(v) {
				for _, m := range mine {
					if m != "" && strings.EqualFold(a.raw, strings.Trim(m, "<>")) {
						named = true
					}
				}
			}
		}
	}
	if !named {
		return false, "the message does not name the user in To, Cc or Bcc"
	}
	return true, ""
}

// equivInputs are strings around the special cases of the helpers: case,
// quotes, comments, groups, routes, angle brackets, encoded words, white
// space, non-ASCII.
var equivInputs = []string{
	"", " ", "a", "A", "user@example.org", "User@Example.ORG", " user@example.org ",
	"Friend <friend@example.org>", "\"Doe, John\" <john@example.org>, jane@example.org",
	"<>", "<@a,@b:user@host>", "group: a@b, c@d;", "undisclosed-recipients:;",
	"(comment) user(inner (nested)) @ example.org", "\"quoted local\"@example.org",
	"\"a\\\"b\"@example.org", "user@[192.0.2.1]", "user@@example.org", "@example.org", "user@",
	"a@b@c", "=?utf-8?q?Gr=C3=BC=C3=9Fe?= <g@example.org>", "Ünïcödé <u@example.org>",
	"user@example.org,", ",,a@b,,", "a@b;c@d", "<a@b", "a@b>", "\tuser@example.org\r\n",
	"x-\x7f@example.org", "ctl\x01@example.org", "K\u212a@example.org", "İ@example.org",
	"list-id", "List-ID", "LIST-ID", "X-Spam-Flag", "YES", "yes", "[urgent]", "*", "?",
}

func randomInput(r *rand.Rand) string {
	const alphabet = "aAzZ@.<>\"(),;:\\ \t\r\n[]=?-_ÄäK\x00\x7f"
	chars := []rune(alphabet)
	n := r.IntN(24)
	var b strings.Builder
	for range n {
		b.WriteRune(chars[r.IntN(len(chars))])
	}
	return b.String()
}

// forEquivInputs calls f with every pair of equivInputs and with pairs of
// random strings (a fixed seed: the same pairs every run).
func forEquivInputs(f func(a, b string)) {
	for _, a := range equivInputs {
		for _, b := range equivInputs {
			f(a, b)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		f(randomInput(r), randomInput(r))
	}
}

func TestCasemapMatchesFoldedCopies(t *testing.T) {
	forEquivInputs(func(a, b string) {
		if got, want := equalFold(a, b), refEqual(a, b); got != want {
			t.Fatalf("equalFold(%q, %q) = %v, want %v", a, b, got, want)
		}
		if got, want := compareFold(a, b), refCompare(a, b); got != want {
			t.Fatalf("compareFold(%q, %q) = %v, want %v", a, b, got, want)
		}
		for _, hay := range []string{a, a + b + a, strings.Repeat(a+b, 300)} {
			if got, want := containsFoldASCII(hay, b), refContains(hay, b); got != want {
				t.Fatalf("containsFoldASCII(%q, %q) = %v, want %v", hay, b, got, want)
			}
		}
	})
}

func TestAddressParsingUnchanged(t *testing.T) {
	forEquivInputs(func(a, b string) {
		for _, s := range []string{a, a + "@" + b, a + ", " + b, "<" + a + "@" + b + ">"} {
			if got, want := parseAddressList(s), refParseAddressList(s); !slices.Equal(got, want) {
				t.Fatalf("parseAddressList(%q) = %+v, want %+v", s, got, want)
			}
			got, gerr := parseMailbox(s)
			want, werr := refParseMailbox(s)
			if got != want || (gerr == nil) != (werr == nil) {
				t.Fatalf("parseMailbox(%q) = %q, %v; want %q, %v", s, got, gerr, want, werr)
			}
		}
	})
}

func TestVacationAllowedUnchanged(t *testing.T) {
	names := []string{"To", "cc", "BCC", "Resent-To", "Resent-Cc", "resent-bcc", "From", "Auto-Submitted",
		"AUTO-SUBMITTED", "Precedence", "List-Id", "list-unsubscribe", "X-Auto-Response-Suppress",
		"Received", "Subject", "X-A-Very-Long-Header-Field-Name-Of-Forty-Chars", "K\u212aeep"}
	values := []string{"bob@example.org", " Bob <bob@example.org>", "other@example.org", "no", " No ; x",
		"auto-replied", "bulk", " LIST", "junk\r\n\t", "All", "OOF, dr", "x\r\n\tbob@example.org", ""}
	mine := []string{"bob@example.org", "", "<alias@example.org>"}
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 5000 {
		var hdr []HeaderField
		for range 1 + r.IntN(5) {
			hdr = append(hdr, HeaderField{Name: names[r.IntN(len(names))], Value: values[r.IntN(len(values))]})
		}
		sender := []string{"alice@example.net", "", "<>", "MAILER-DAEMON@example.net", "owner-x@example.net",
			"x-request@example.net", "bob@example.org"}[i%7]
		gotOK, gotWhy := VacationAllowed(hdr, sender, mine)
		wantOK, wantWhy := refVacationAllowed(hdr, sender, mine)
		if gotOK != wantOK || gotWhy != wantWhy {
			t.Fatalf("VacationAllowed(%v, %q) = %v %q, want %v %q", hdr, sender, gotOK, gotWhy, wantOK, wantWhy)
		}
	}
}

func TestAddressHeaderNamesFit(t *testing.T) {
	for name := range addressHeaders {
		for _, n := range []string{name, strings.ToUpper(name), strings.ToUpper(name[:1]) + name[1:]} {
			if got, want := isAddressHeader(n), addressHeaders[lower(n)]; got != want {
				t.Errorf("isAddressHeader(%q) = %v, want %v", n, got, want)
			}
		}
	}
	if isAddressHeader("Subject") || isAddressHeader(strings.Repeat("to", 40)) {
		t.Error("isAddressHeader accepts a field that is not an address field")
	}
}

// FuzzAddressParsing: the address parsers agree with their reference on
// any input.
func FuzzAddressParsing(f *testing.F) {
	for _, s := range equivInputs {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := parseAddressList(s), refParseAddressList(s); !slices.Equal(got, want) {
			t.Fatalf("parseAddressList(%q) = %+v, want %+v", s, got, want)
		}
		got, gerr := parseMailbox(s)
		want, werr := refParseMailbox(s)
		if got != want || (gerr == nil) != (werr == nil) {
			t.Fatalf("parseMailbox(%q) = %q, %v; want %q, %v", s, got, gerr, want, werr)
		}
		for _, k := range []string{"a", "Z", "@", s} {
			if equalFold(s, k) != refEqual(s, k) || compareFold(s, k) != refCompare(s, k) || containsFoldASCII(s, k) != refContains(s, k) {
				t.Fatalf("casemap helpers disagree with the folded copies on %q, %q", s, k)
			}
		}
	})
}

// TestAddressNonASCII: a UTF-8 address (RFC 6532) reads the same inside
// angle brackets as bare.
func TestAddressNonASCII(t *testing.T) {
	for _, v := range []string{"jöhn@example.org", "<jöhn@example.org>", `"J" <jöhn@example.org>`, "J (c) <jöhn@example.org>"} {
		l := parseAddressList(v)
		if len(l) != 1 || !l[0].valid || l[0].raw != "jöhn@example.org" || l[0].local != "jöhn" {
			t.Errorf("parseAddressList(%q) = %+v, want jöhn@example.org", v, l)
		}
	}
}

func TestByteHelpersUnchanged(t *testing.T) {
	forEquivInputs(func(a, b string) {
		for _, s := range []string{a, "<" + a + ">", "<<" + b + ">>", a + "<>" + b} {
			if got, want := trimAngles(s), strings.Trim(s, "<>"); got != want {
				t.Fatalf("trimAngles(%q) = %q, want %q", s, got, want)
			}
			for _, c := range []struct {
				set   *byteSet
				chars string
			}{{&localSpecials, " \t\"<>()[]"}, {&domainSpecials, " \t\"<>()@,;"}, {&rawSpecials, " \"\\"}} {
				if got, want := hasAny(s, c.set), strings.ContainsAny(s, c.chars); got != want {
					t.Fatalf("hasAny(%q, %q) = %v, want %v", s, c.chars, got, want)
				}
			}
		}
	})
}
