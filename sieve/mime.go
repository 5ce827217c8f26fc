package sieve

import (
	"mime"
	"strings"
	"unicode/utf8"
)

// MIME-part tests and loops of RFC 5703: header, address and exists with
// :mime and :anychild, foreverypart, break, extracttext.

// curPart is the part the innermost foreverypart is at, or the message.
func (r *run) curPart(f *frame, n *node) (*mimePart, error) {
	if len(r.parts) > 0 {
		return r.parts[len(r.parts)-1], nil
	}
	bc, err := r.loadBody(f, n)
	if err != nil {
		return nil, err
	}
	return bc.root, nil
}

// headerFields returns the raw values of a field: from the message header
// (as edited), or with :mime from the current MIME part, and with
// :anychild from it and every part below it (RFC 5703 section 4.1).
func (r *run) headerFields(f *frame, n *node, name string) ([]string, error) {
	if !n.mime {
		return r.fields(name), nil
	}
	cur, err := r.curPart(f, n)
	if err != nil {
		return nil, err
	}
	var out []string
	collect := func(p *mimePart) {
		for _, h := range p.hdr {
			if strings.EqualFold(h.Name, name) {
				out = append(out, h.Value)
			}
		}
	}
	if n.anychild {
		cur.walk(collect)
	} else {
		collect(cur)
	}
	return out, nil
}

// mimeOption applies :type, :subtype, :contenttype or :param to a
// structured field value (RFC 5703 section 4.2).
func mimeOption(n *node, v string) []string {
	if !n.has("type") && !n.has("subtype") && !n.has("contenttype") && !n.has("param") {
		return []string{v}
	}
	mt, params, err := mime.ParseMediaType(v)
	if err != nil {
		if mt == "" {
			return nil
		}
	}
	typ, sub, _ := strings.Cut(mt, "/")
	switch {
	case n.has("type"):
		return []string{typ}
	case n.has("subtype"):
		return []string{sub}
	case n.has("contenttype"):
		return []string{mt}
	}
	var out []string
	for _, p := range n.tags["param"].strs {
		if val, ok := params[lower(p.val)]; ok {
			out = append(out, val)
		}
	}
	return out
}

// foreverypart runs its block once per MIME part (RFC 5703 section 3): at
// the top level for the message and every part below it in pre-order, as
// Pigeonhole does; nested, for the parts below the outer loop's part.
func (r *run) foreverypart(f *frame, n *node) (control, error) {
	var list []*mimePart
	if len(r.parts) == 0 {
		bc, err := r.loadBody(f, n)
		if err != nil {
			return ctlStop, err
		}
		bc.root.walk(func(p *mimePart) { list = append(list, p) })
	} else {
		top := r.parts[len(r.parts)-1]
		top.walk(func(p *mimePart) {
			if p != top {
				list = append(list, p)
			}
		})
	}
	name := ""
	if s, ok := n.tagStr("name"); ok {
		name = s.val
	}
	for _, p := range list {
		r.parts = append(r.parts, p)
		c, err := r.block(f, n.block)
		r.parts = r.parts[:len(r.parts)-1]
		if err != nil {
			return ctlStop, err
		}
		switch c {
		case ctlBreak:
			if r.breakTo == "" || r.breakTo == name {
				r.breakTo = ""
				return ctlNext, nil
			}
			return ctlBreak, nil
		case ctlStop, ctlReturn:
			return c, nil
		}
	}
	return ctlNext, nil
}

// extracttext stores the text of the current part in a variable (RFC 5703
// section 7): text/* parts as text (HTML reduced to its text), others as
// the empty string.
func (r *run) extracttext(f *frame, n *node) error {
	cur, err := r.curPart(f, n)
	if err != nil {
		return err
	}
	var text string
	if cur.leaf && strings.HasPrefix(cur.mt, "text/") {
		text = cur.text
		if cur.mt == "text/html" {
			text = htmlText(text)
		}
	}
	if k, ok := n.tagNum("first"); ok && int64(utf8.RuneCountInString(text)) > k {
		rs := []rune(text)
		text = string(rs[:k])
	}
	if len(text) > r.opts.MaxVariableSize {
		// Only the variable limit applies; cut at a character boundary.
		cut := r.opts.MaxVariableSize
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		text = text[:cut]
	}
	return r.setVar(f, n, n.args[0].strs[0].val, modify(n, text))
}
