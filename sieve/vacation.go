package sieve

import "strings"

// VacationAllowed applies the rules of RFC 5230 section 4.5 as Pigeonhole
// does (checked with its sieve-test -e: the same senders, list fields,
// Precedence values and X-Auto-Response-Suppress flags are refused): it reports whether an auto-reply may go
// to sender for a message with header hdr, and why not. mine are the
// user's addresses (the envelope recipient, :addresses and the like); the
// message must name one of them in To, Cc, Bcc, Resent-To, Resent-Cc or
// Resent-Bcc. It is a pure function.
func VacationAllowed(hdr []HeaderField, sender string, mine []string) (bool, string) {
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
		if m != "" && strings.EqualFold(trimAngles(m), sender) {
			return false, "sender is the user"
		}
	}
	named := false
	for _, h := range hdr {
		var buf [32]byte
		name, ok := lowerName(buf[:0], h.Name)
		if !ok {
			continue // longer than any name looked at here
		}
		var v string
		switch string(name) {
		case "auto-submitted", "precedence", "x-auto-response-suppress",
			"to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc":
			v = unfold(h.Value)
		}
		switch string(name) {
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
			for _, a := range parseAddressList(v) {
				for _, m := range mine {
					if m != "" && strings.EqualFold(a.raw, trimAngles(m)) {
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

// trimAngles is strings.Trim(s, "<>").
func trimAngles(s string) string {
	i, j := 0, len(s)
	for i < j && (s[i] == '<' || s[i] == '>') {
		i++
	}
	for j > i && (s[j-1] == '<' || s[j-1] == '>') {
		j--
	}
	return s[i:j]
}

// lowerName appends the ASCII lower case of a header field name to buf
// (field names are ASCII, RFC 5322 section 2.2) if it fits buf's capacity;
// ok is false when it does not. Switching on string(name) then allocates
// nothing.
func lowerName(buf []byte, name string) (out []byte, ok bool) {
	if len(name) > cap(buf)-len(buf) {
		return buf, false
	}
	for i := 0; i < len(name); i++ {
		buf = append(buf, foldByte(name[i]))
	}
	return buf, true
}
