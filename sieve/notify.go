package sieve

import (
	"errors"
	"net/url"
	"slices"
	"strings"
)

// parseMailtoURI checks a notification method: only mailto (RFC 5436,
// RFC 6068) is supported. It returns the recipients and the header fields.
func parseMailtoURI(s string) (*Notify, error) {
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || !strings.EqualFold(scheme, "mailto") {
		return nil, errors.New("unsupported notification method " + strconvQuote(s) + " (only mailto)")
	}
	to, query, _ := strings.Cut(rest, "?")
	n := &Notify{Method: s, Headers: map[string]string{}}
	addTo := func(list string) error {
		for _, a := range strings.Split(list, ",") {
			if strings.TrimSpace(a) == "" {
				continue
			}
			d, err := url.PathUnescape(a)
			if err != nil {
				return errors.New("invalid mailto URI " + strconvQuote(s))
			}
			m, err := parseMailbox(d)
			if err != nil {
				return errors.New("invalid address in mailto URI " + strconvQuote(s))
			}
			n.To = append(n.To, m)
		}
		return nil
	}
	if err := addTo(to); err != nil {
		return nil, err
	}
	if query != "" {
		for _, kv := range strings.Split(query, "&") {
			k, v, _ := strings.Cut(kv, "=")
			dk, err1 := url.QueryUnescape(k)
			dv, err2 := url.PathUnescape(v)
			if err1 != nil || err2 != nil {
				return nil, errors.New("invalid mailto URI " + strconvQuote(s))
			}
			if strings.EqualFold(dk, "to") {
				if err := addTo(v); err != nil {
					return nil, err
				}
				continue
			}
			n.Headers[strings.ToLower(dk)] = dv
		}
	}
	if len(n.To) == 0 {
		return nil, errors.New("mailto URI without a recipient: " + strconvQuote(s))
	}
	return n, nil
}

func strconvQuote(s string) string { return "\"" + strings.ReplaceAll(s, "\"", "\\\"") + "\"" }

// encodeURL percent-encodes everything but the unreserved characters of
// RFC 3986 section 2.3 (RFC 5435 section 6, :encodeurl).
func encodeURL(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAlpha(c) || isDigit(c) || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

func (r *run) notify(f *frame, n *node) error {
	method, err := r.str(f, n, n.args[0].strs[0])
	if err != nil {
		return err
	}
	nt, perr := parseMailtoURI(method)
	if perr != nil {
		return r.fail(f, n.pos, ErrInvalidArgument, "notify: %v", perr)
	}
	if nt.From, _, err = r.tagString(f, n, "from"); err != nil {
		return err
	}
	if nt.From != "" {
		if _, perr := parseMailbox(nt.From); perr != nil {
			return r.fail(f, n.pos, ErrInvalidArgument, "notify :from: invalid address %q", nt.From)
		}
	}
	nt.Importance = "2"
	if v, ok, err := r.tagString(f, n, "importance"); err != nil {
		return err
	} else if ok {
		if v != "1" && v != "2" && v != "3" {
			return r.fail(f, n.pos, ErrInvalidArgument, "notify: invalid :importance %q", v)
		}
		nt.Importance = v
	}
	if nt.Options, err = r.strs(f, n, n.tags["options"]); err != nil {
		return err
	}
	nt.Options = slices.Clone(nt.Options) // the Result's own, not the script's
	msg, ok, err := r.tagString(f, n, "message")
	if err != nil {
		return err
	}
	if !ok {
		// RFC 5435 section 3.5 leaves the default to the implementation.
		var from, subj string
		if v := r.fields("From"); len(v) > 0 {
			from = r.decodeHeader(v[0])
		}
		if v := r.fields("Subject"); len(v) > 0 {
			subj = r.decodeHeader(v[0])
		}
		msg = from + ": " + subj
	}
	nt.Message = msg
	// RFC 5436 section 2.7: never notify about auto-submitted mail.
	for _, v := range r.fields("Auto-Submitted") {
		if !strings.EqualFold(strings.TrimSpace(strings.SplitN(unfold(v), ";", 2)[0]), "no") {
			return nil
		}
	}
	// RFC 5435 section 3.9: the same notification twice is sent once.
	for _, a := range r.res.Actions {
		if a.Kind == ActNotify && a.Notify.Method == nt.Method && a.Notify.Message == nt.Message {
			return nil
		}
	}
	return r.add(f, n, Action{Kind: ActNotify, Notify: nt})
}
