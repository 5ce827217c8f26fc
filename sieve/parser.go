package sieve

// The syntax tree: what the parser produces and the checker reads
// (RFC 5228 section 8.2).

type argKind int

const (
	argTag argKind = iota
	argNumber
	argStrings
)

// sstring is one string of a script with the position of its token.
type sstring struct {
	val string
	pos Pos
}

type argument struct {
	kind   argKind
	pos    Pos
	tag    string    // argTag: lowercase name without ':'
	num    int64     // argNumber
	strs   []sstring // argStrings
	isList bool      // written in brackets
	// vals holds the strings of an argStrings argument that refers to no
	// variable (set by the checker, with len == cap): run.strs hands it
	// out as it is, read-only, instead of expanding each string again.
	vals []string
}

type testNode struct {
	pos   Pos
	name  string // lowercase
	args  []argument
	tests []*testNode
	paren bool // the tests were a parenthesised test-list
}

type commandNode struct {
	pos      Pos
	name     string // lowercase
	args     []argument
	tests    []*testNode
	paren    bool
	block    []*commandNode
	hasBlock bool
}

// maxNesting bounds block and test nesting so that a hostile script cannot
// exhaust the stack of the parser or the checker.
const maxNesting = 64

type parser struct {
	lx    *lexer
	tok   token
	err   *Error
	depth int
}

// parse parses a whole script; it stops at the first syntax error.
func parse(file, src string) ([]*commandNode, *Error) {
	p := &parser{lx: newLexer(file, src)}
	p.next()
	cmds := p.commands(true)
	if p.err == nil && p.tok.kind != tokEOF {
		p.errorf(p.tok.pos, "unexpected "+p.tok.kind.String())
	}
	if p.err != nil {
		return nil, p.err
	}
	return cmds, nil
}

func (p *parser) next() {
	p.tok = p.lx.next()
	if p.lx.err != nil && p.err == nil {
		p.err = p.lx.err
	}
}

func (p *parser) errorf(pos Pos, msg string) {
	if p.err == nil {
		p.err = &Error{File: p.lx.file, Pos: pos, Msg: msg}
	}
}

func (p *parser) commands(top bool) []*commandNode {
	var cmds []*commandNode
	for p.err == nil {
		if p.tok.kind == tokEOF || (!top && p.tok.kind == tokRBrace) {
			return cmds
		}
		if p.tok.kind != tokIdent {
			p.errorf(p.tok.pos, "expected a command, found "+p.tok.kind.String())
			return nil
		}
		c := p.command()
		if c != nil {
			cmds = append(cmds, c)
		}
	}
	return nil
}

func (p *parser) command() *commandNode {
	c := &commandNode{pos: p.tok.pos, name: lower(p.tok.text)}
	p.next()
	c.args, c.tests, c.paren = p.arguments()
	if p.err != nil {
		return nil
	}
	switch p.tok.kind {
	case tokSemicolon:
		p.next()
	case tokLBrace:
		p.depth++
		if p.depth > maxNesting {
			p.errorf(p.tok.pos, "blocks nested too deeply")
			return nil
		}
		p.next()
		c.block = p.commands(false)
		c.hasBlock = true
		if p.err != nil {
			return nil
		}
		if p.tok.kind != tokRBrace {
			p.errorf(p.tok.pos, "expected '}', found "+p.tok.kind.String())
			return nil
		}
		p.depth--
		p.next()
	default:
		p.errorf(p.tok.pos, "expected ';' or '{' after command "+c.name+", found "+p.tok.kind.String())
		return nil
	}
	return c
}

// arguments reads *argument [test / test-list].
func (p *parser) arguments() ([]argument, []*testNode, bool) {
	var args []argument
	for p.err == nil {
		switch p.tok.kind {
		case tokTag:
			args = append(args, argument{kind: argTag, pos: p.tok.pos, tag: lower(p.tok.text)})
			p.next()
		case tokNumber:
			args = append(args, argument{kind: argNumber, pos: p.tok.pos, num: p.tok.num})
			p.next()
		case tokString:
			args = append(args, argument{kind: argStrings, pos: p.tok.pos, strs: []sstring{{p.tok.text, p.tok.pos}}})
			p.next()
		case tokLBracket:
			a := argument{kind: argStrings, pos: p.tok.pos, isList: true}
			p.next()
			for p.err == nil {
				if p.tok.kind != tokString {
					p.errorf(p.tok.pos, "expected a string in the string list, found "+p.tok.kind.String())
					return nil, nil, false
				}
				a.strs = append(a.strs, sstring{p.tok.text, p.tok.pos})
				p.next()
				if p.tok.kind == tokComma {
					p.next()
					continue
				}
				if p.tok.kind != tokRBracket {
					p.errorf(p.tok.pos, "expected ',' or ']' in the string list, found "+p.tok.kind.String())
					return nil, nil, false
				}
				p.next()
				break
			}
			args = append(args, a)
		case tokIdent:
			t := p.test()
			return args, []*testNode{t}, false
		case tokLParen:
			return args, p.testList(), true
		default:
			return args, nil, false
		}
	}
	return nil, nil, false
}

func (p *parser) test() *testNode {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxNesting {
		p.errorf(p.tok.pos, "tests nested too deeply")
		return nil
	}
	t := &testNode{pos: p.tok.pos, name: lower(p.tok.text)}
	p.next()
	t.args, t.tests, t.paren = p.arguments()
	return t
}

func (p *parser) testList() []*testNode {
	p.next() // '('
	var ts []*testNode
	for p.err == nil {
		if p.tok.kind != tokIdent {
			p.errorf(p.tok.pos, "expected a test, found "+p.tok.kind.String())
			return nil
		}
		ts = append(ts, p.test())
		if p.err != nil {
			return nil
		}
		if p.tok.kind == tokComma {
			p.next()
			continue
		}
		if p.tok.kind != tokRParen {
			p.errorf(p.tok.pos, "expected ',' or ')' in the test list, found "+p.tok.kind.String())
			return nil
		}
		p.next()
		return ts
	}
	return nil
}

// lower folds ASCII letters: identifiers and tags are case-insensitive
// (RFC 5228 section 2.2).
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
