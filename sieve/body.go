package sieve

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"regexp"
	"strings"
	"unicode/utf8"
)

// bodyPart is one leaf of the MIME tree, decoded.
type bodyPart struct {
	ctype string // lowercase type/subtype
	text  string // transfer- and charset-decoded content
}

type bodyCache struct {
	raw   string
	root  *mimePart
	parts []bodyPart // the leaves, in order
}

const (
	maxMIMEDepth = 10
	maxMIMEParts = 200
)

// mimePart is one entity of the MIME tree (RFC 2045, RFC 2046): the
// message itself, a part of a multipart, or the message inside a
// message/rfc822 part.
type mimePart struct {
	hdr      []HeaderField
	mt       string // lowercase type/subtype
	children []*mimePart
	leaf     bool
	text     string // leaves: transfer-decoded, text/* converted to UTF-8
}

// walk calls fn for p and its descendants in pre-order.
func (p *mimePart) walk(fn func(*mimePart)) {
	fn(p)
	for _, c := range p.children {
		c.walk(fn)
	}
}

// loadBody reads the body once per run, up to MaxBodySize, and splits it
// into the MIME tree with the standard library, so that no process-wide
// charset hook is needed.
func (r *run) loadBody(f *frame, n *node) (*bodyCache, error) {
	if r.body != nil {
		return r.body, nil
	}
	rd, err := r.msg.Body()
	if err != nil {
		return nil, r.fail(f, n.pos, err, "body: %v", err)
	}
	raw, err := io.ReadAll(io.LimitReader(rd, r.opts.MaxBodySize))
	if err != nil {
		return nil, r.fail(f, n.pos, err, "body: %v", err)
	}
	// Reading, transfer decoding and charset conversion: about a
	// microsecond per 128 bytes.
	if err := r.step(f, n.pos, len(raw)/128); err != nil {
		return nil, err
	}
	bc := &bodyCache{raw: string(raw)}
	count := 0
	bc.root = r.buildPart(r.msg.Header(), raw, 0, &count)
	bc.root.walk(func(p *mimePart) {
		if p.leaf {
			bc.parts = append(bc.parts, bodyPart{ctype: p.mt, text: p.text})
		}
	})
	r.body = bc
	return bc, nil
}

func headerGet(h []HeaderField, name string) string {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return unfold(f.Value)
		}
	}
	return ""
}

func (r *run) buildPart(hdr []HeaderField, data []byte, depth int, count *int) *mimePart {
	*count++
	p := &mimePart{hdr: hdr}
	ct := headerGet(hdr, "Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || ct == "" {
		// RFC 2045 section 5.2: the default is text/plain; us-ascii.
		mt, params = "text/plain", map[string]string{}
	}
	p.mt = mt
	if strings.HasPrefix(mt, "multipart/") && params["boundary"] != "" && depth < maxMIMEDepth {
		mr := multipart.NewReader(bytes.NewReader(data), params["boundary"])
		for *count < maxMIMEParts {
			part, err := mr.NextRawPart()
			if err != nil {
				break
			}
			b, err := io.ReadAll(part)
			if err != nil {
				break
			}
			var ph []HeaderField
			keys := make([]string, 0, len(part.Header))
			for k := range part.Header {
				keys = append(keys, k)
			}
			sortStrings(keys)
			for _, k := range keys {
				for _, v := range part.Header[k] {
					ph = append(ph, HeaderField{Name: k, Value: " " + v})
				}
			}
			p.children = append(p.children, r.buildPart(ph, b, depth+1, count))
		}
		return p
	}
	dec := decodeTransfer(headerGet(hdr, "Content-Transfer-Encoding"), data)
	if mt == "message/rfc822" && depth < maxMIMEDepth && *count < maxMIMEParts {
		inner := ParseMessage(dec).(*bytesMessage)
		p.children = append(p.children, r.buildPart(inner.hdr, inner.body, depth+1, count))
		return p
	}
	p.leaf = true
	p.text = string(dec)
	if strings.HasPrefix(mt, "text/") {
		p.text = r.toUTF8(params["charset"], dec)
	}
	return p
}

func decodeTransfer(cte string, data []byte) []byte {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "base64":
		clean := bytes.Map(func(r rune) rune {
			if r == '\r' || r == '\n' || r == ' ' || r == '\t' {
				return -1
			}
			return r
		}, data)
		out := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
		n, err := base64.StdEncoding.Decode(out, clean)
		if err != nil && n == 0 {
			return data
		}
		return out[:n]
	case "quoted-printable":
		out, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(data)))
		if err != nil && len(out) == 0 {
			return data
		}
		return out
	}
	return data
}

// toUTF8 converts text in a charset to UTF-8; what cannot be converted
// keeps its valid UTF-8 and loses the rest.
func (r *run) toUTF8(cs string, b []byte) string {
	switch strings.ToLower(cs) {
	case "", "utf-8", "utf8", "us-ascii", "ascii":
	case "iso-8859-1", "latin1", "iso8859-1":
		var sb strings.Builder
		for _, c := range b {
			sb.WriteRune(rune(c))
		}
		return sb.String()
	default:
		if r.env.CharsetReader != nil {
			if rd, err := r.env.CharsetReader(strings.ToLower(cs), bytes.NewReader(b)); err == nil {
				if out, err := io.ReadAll(io.LimitReader(rd, int64(len(b))*4+16)); err == nil {
					return strings.ToValidUTF8(string(out), "\uFFFD")
				}
			}
		}
	}
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

var (
	htmlDrop = regexp.MustCompile(`(?is)<(script|style)[^>]*>.*?</(script|style)\s*>`)
	htmlTag  = regexp.MustCompile(`(?s)<[^>]*>`)
)

// htmlText reduces HTML to its text for body :text (RFC 5173 section 5.3
// leaves the conversion to the implementation).
func htmlText(s string) string {
	s = htmlDrop.ReplaceAllString(s, " ")
	s = htmlTag.ReplaceAllString(s, " ")
	s = strings.NewReplacer("&nbsp;", " ", "&amp;", "&", "&lt;", "<", "&gt;", ">", "&quot;", "\"", "&#39;", "'").Replace(s)
	// White space collapses as a browser shows it.
	return strings.Join(strings.Fields(s), " ")
}

// contentMatches: "" matches every part, "text" any text/*, "text/plain"
// that type (RFC 5173 section 5.2).
func contentMatches(mt string, types []string) bool {
	for _, t := range types {
		t = strings.ToLower(strings.TrimSpace(t))
		switch {
		case t == "":
			return true
		case strings.Contains(t, "/"):
			if mt == t {
				return true
			}
		default:
			if strings.HasPrefix(mt, t+"/") {
				return true
			}
		}
	}
	return false
}

func (r *run) bodyTest(f *frame, n *node) (bool, error) {
	bc, err := r.loadBody(f, n)
	if err != nil {
		return false, err
	}
	var vals []string
	switch {
	case n.has("raw"):
		vals = []string{bc.raw}
	case n.has("content"):
		types, err := r.strs(f, n, n.tags["content"])
		if err != nil {
			return false, err
		}
		for _, p := range bc.parts {
			if contentMatches(p.ctype, types) {
				vals = append(vals, p.text)
			}
		}
	default:
		for _, p := range bc.parts {
			switch {
			case p.ctype == "text/html":
				vals = append(vals, htmlText(p.text))
			case strings.HasPrefix(p.ctype, "text/"):
				vals = append(vals, p.text)
			}
		}
	}
	return r.matchKeys(f, n, vals, n.args[0])
}
