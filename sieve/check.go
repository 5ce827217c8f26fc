package sieve

import (
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// node is a checked command or test: the compiled form the interpreter
// runs. Nodes are never modified after Compile returns.
type node struct {
	name  string
	pos   Pos
	tags  map[string]*argument // value tags: the value; flag tags: the tag itself
	args  []*argument          // positional, nil where an optional one is absent
	tests []*node
	block []*node
	next  *node // if/elsif: the elsif or else that follows
	vars  bool  // variables is in effect: expand "${...}" at run time

	// Precomputed for tests that match.
	mt      matchType
	rel     string
	cmp     comparator
	ap      string // address part: all, localpart, domain, user, detail
	keyRE   []*regexp.Regexp
	disable bool // an ihave test naming an unknown extension: false, block unchecked
	// Tags the interpreter looks at in every header, address and date
	// test, read once from tags.
	mimeOpt  bool  // :type, :subtype, :contenttype or :param (RFC 5703 section 4.2)
	mime     bool  // :mime (RFC 5703 section 4.1)
	anychild bool  // :anychild
	last     bool  // :last (RFC 5260 section 6)
	hasIndex bool  // :index given
	index    int64 // its value

	vacHandle string // vacation without :handle and without variables: its implicit handle
}

func (n *node) has(tag string) bool { _, ok := n.tags[tag]; return ok }

func (n *node) tagStr(tag string) (sstring, bool) {
	a, ok := n.tags[tag]
	if !ok || a.kind != argStrings || len(a.strs) == 0 {
		return sstring{}, false
	}
	return a.strs[0], true
}

func (n *node) tagNum(tag string) (int64, bool) {
	a, ok := n.tags[tag]
	if !ok || a.kind != argNumber {
		return 0, false
	}
	return a.num, true
}

type checker struct {
	file   string
	errs   ErrorList
	exts   map[string]bool // required so far (in scope)
	maxErr int
	limits *CompileOptions
	loops  []string // names of the enclosing foreverypart loops
}

func (c *checker) errorf(p Pos, format string, args ...any) {
	if len(c.errs) >= c.maxErr {
		return
	}
	msg := format
	if len(args) > 0 {
		msg = sprintf(format, args...)
	}
	c.errs = append(c.errs, &Error{File: c.file, Pos: p, Msg: msg})
}

func (c *checker) has(ext string) bool { return c.exts[ext] }

func (c *checker) require(p Pos, ext string) bool {
	if !knownExtensions[ext] {
		c.errorf(p, "unsupported extension %q", ext)
		return false
	}
	c.exts[ext] = true
	for _, e := range impliedExtensions[ext] {
		c.exts[e] = true
	}
	return true
}

// checkBlock checks a list of commands; top tells whether require may
// appear (only at the start of the script, RFC 5228 section 3.2).
func (c *checker) checkBlock(cmds []*commandNode, top bool) []*node {
	var out []*node
	var chain *node // the last if/elsif, to which elsif/else attach
	requireOK := top
	for _, cn := range cmds {
		if cn.name == "require" {
			if !requireOK {
				c.errorf(cn.pos, "require must come before any other command, at the top of the script")
			}
			n := c.checkCommand(cn)
			if n != nil {
				for _, s := range n.args[0].strs {
					c.require(s.pos, s.val)
				}
			}
			continue
		}
		requireOK = false
		switch cn.name {
		case "elsif", "else":
			if chain == nil {
				c.errorf(cn.pos, "%s without a preceding if", cn.name)
				continue
			}
			n := c.checkCommand(cn)
			if n == nil {
				// Reported already; keep the chain so that a later
				// else is not reported as stray.
				n = &node{name: cn.name}
			}
			chain.next = n
			if cn.name == "elsif" {
				chain = n
			} else {
				chain = nil
			}
			continue
		}
		n := c.checkCommand(cn)
		switch {
		case cn.name == "if" && n != nil:
			chain = n
		case cn.name == "if":
			chain = &node{name: "if"} // in error, reported; elsif/else may follow
		default:
			chain = nil
		}
		if n != nil {
			out = append(out, n)
		}
	}
	return out
}

func (c *checker) checkCommand(cn *commandNode) *node {
	def, ok := commandDefs[cn.name]
	if !ok {
		if _, isTest := testDefs[cn.name]; isTest {
			c.errorf(cn.pos, "%s is a test, not a command", cn.name)
		} else {
			c.errorf(cn.pos, "unknown command %s", cn.name)
		}
		return nil
	}
	if def.ext != "" && !c.has(def.ext) {
		c.errorf(cn.pos, "command %s requires extension %q (missing require)", cn.name, def.ext)
		return nil
	}
	n := &node{name: cn.name, pos: cn.pos, vars: c.has("variables")}
	if !c.checkArgs(n, def, cn.args) {
		return nil
	}
	// Tests.
	switch {
	case def.tests == 0 && len(cn.tests) > 0:
		c.errorf(cn.tests[0].pos, "command %s takes no test", cn.name)
		return nil
	case def.tests == 1 && (len(cn.tests) != 1 || cn.paren):
		c.errorf(cn.pos, "command %s needs one test", cn.name)
		return nil
	}
	// ihave directly under if/elsif guards its block (RFC 5463 section 4).
	saved := c.exts
	if (cn.name == "if" || cn.name == "elsif") && len(cn.tests) == 1 && cn.tests[0].name == "ihave" && c.has("ihave") {
		t := c.checkTest(cn.tests[0], 0)
		if t == nil {
			return nil
		}
		n.tests = []*node{t}
		if t.disable {
			// The block is neither checked nor run: it may use
			// extensions this implementation lacks.
			if !cn.hasBlock {
				c.errorf(cn.pos, "command %s needs a block", cn.name)
			}
			return n
		}
		c.exts = make(map[string]bool, len(saved)+4)
		for k, v := range saved {
			c.exts[k] = v
		}
		for _, s := range t.args[0].strs {
			c.require(s.pos, s.val)
		}
	} else {
		for _, tn := range cn.tests {
			t := c.checkTest(tn, 0)
			if t == nil {
				// Reported; the block is still checked for its own
				// errors, then the command is dropped.
				if cn.hasBlock {
					c.checkBlock(cn.block, false)
				}
				return nil
			}
			n.tests = append(n.tests, t)
		}
	}
	// Block.
	if def.block != cn.hasBlock {
		if def.block {
			c.errorf(cn.pos, "command %s needs a block", cn.name)
		} else {
			c.errorf(cn.pos, "command %s takes no block", cn.name)
		}
		c.exts = saved
		return nil
	}
	if cn.hasBlock {
		if cn.name == "foreverypart" {
			name := ""
			if v, ok := n.tagStr("name"); ok {
				name = v.val
			}
			c.loops = append(c.loops, name)
		}
		n.block = c.checkBlock(cn.block, false)
		if cn.name == "foreverypart" {
			c.loops = c.loops[:len(c.loops)-1]
		}
	}
	c.exts = saved
	if def.extra != nil {
		def.extra(c, n)
	}
	c.compileMatch(n, def)
	return n
}

func (c *checker) checkTest(tn *testNode, depth int) *node {
	def, ok := testDefs[tn.name]
	if !ok {
		if _, isCmd := commandDefs[tn.name]; isCmd {
			c.errorf(tn.pos, "%s is a command, not a test", tn.name)
		} else {
			c.errorf(tn.pos, "unknown test %s", tn.name)
		}
		return nil
	}
	if def.ext != "" && !c.has(def.ext) {
		c.errorf(tn.pos, "test %s requires extension %q (missing require)", tn.name, def.ext)
		return nil
	}
	n := &node{name: tn.name, pos: tn.pos, vars: c.has("variables")}
	if !c.checkArgs(n, def, tn.args) {
		return nil
	}
	switch def.tests {
	case 0:
		if len(tn.tests) > 0 {
			c.errorf(tn.pos, "test %s takes no test", tn.name)
			return nil
		}
	case 1:
		if len(tn.tests) != 1 || tn.paren {
			c.errorf(tn.pos, "test %s needs one test", tn.name)
			return nil
		}
	case -1:
		if !tn.paren {
			c.errorf(tn.pos, "test %s needs a test list in parentheses", tn.name)
			return nil
		}
	}
	for _, sub := range tn.tests {
		t := c.checkTest(sub, depth+1)
		if t == nil {
			return nil
		}
		n.tests = append(n.tests, t)
	}
	if tn.name == "ihave" {
		for _, s := range n.args[0].strs {
			if !knownExtensions[s.val] {
				n.disable = true
			}
		}
	}
	if def.extra != nil {
		def.extra(c, n)
	}
	c.compileMatch(n, def)
	return n
}

// checkArgs sorts the arguments into tags and positional ones and checks
// their types against def.
func (c *checker) checkArgs(n *node, def *cmdDef, args []argument) bool {
	kind := "command"
	if def.test {
		kind = "test"
	}
	groups := map[string]string{}
	var pos []*argument
	for i := 0; i < len(args); i++ {
		a := &args[i]
		if a.kind != argTag {
			pos = append(pos, a)
			continue
		}
		if len(pos) > 0 {
			// RFC 5228 section 2.6.2: tagged arguments come before
			// positional ones (Pigeonhole refuses them after, too).
			c.errorf(a.pos, "tag :%s after the positional arguments of %s %s", a.tag, kind, n.name)
			return false
		}
		var td tagDef
		found := false
		for _, set := range def.tags {
			if d, ok := set[a.tag]; ok {
				td, found = d, true
				break
			}
		}
		if !found {
			c.errorf(a.pos, "unknown tag :%s for %s %s", a.tag, kind, n.name)
			return false
		}
		if td.ext != "" && !c.has(td.ext) {
			c.errorf(a.pos, "tag :%s requires extension %q (missing require)", a.tag, td.ext)
			return false
		}
		if n.tags == nil {
			n.tags = map[string]*argument{}
		}
		if _, dup := n.tags[a.tag]; dup {
			c.errorf(a.pos, "tag :%s given twice", a.tag)
			return false
		}
		if td.group != "" {
			if other, ok := groups[td.group]; ok {
				c.errorf(a.pos, "tag :%s conflicts with :%s", a.tag, other)
				return false
			}
			groups[td.group] = a.tag
		}
		if td.val == atNone {
			n.tags[a.tag] = a
			continue
		}
		if i+1 >= len(args) || !c.typeOK(&args[i+1], td.val) {
			c.errorf(a.pos, "tag :%s needs a %s argument", a.tag, td.val)
			return false
		}
		i++
		n.tags[a.tag] = &args[i]
	}
	min := len(def.args) - def.opt - def.optTail
	if len(pos) < min || len(pos) > len(def.args) {
		if len(def.args) == 0 {
			c.errorf(n.pos, "%s %s takes no positional arguments", kind, n.name)
		} else {
			c.errorf(n.pos, "%s %s needs %d positional argument(s), found %d", kind, n.name, len(def.args), len(pos))
		}
		return false
	}
	n.args = make([]*argument, len(def.args))
	off := 0
	if len(pos) < len(def.args) && def.opt > 0 {
		off = len(def.args) - len(pos)
	}
	for i, a := range pos {
		want := def.args[i+off]
		if !c.typeOK(a, want) {
			c.errorf(a.pos, "%s %s: argument %d must be a %s", kind, n.name, i+1, want)
			return false
		}
		n.args[i+off] = a
	}
	// Strings: encoded-character (RFC 5228 section 2.4.2.4) at compile time.
	if c.has("encoded-character") {
		for _, a := range args {
			if a.kind == argStrings {
				for j := range a.strs {
					v, err := decodeEncodedCharacter(a.strs[j].val)
					if err != "" {
						c.errorf(a.strs[j].pos, "%s", err)
						return false
					}
					a.strs[j].val = v
				}
			}
		}
	}
	for _, a := range args {
		if a.kind == argStrings {
			for _, s := range a.strs {
				if !utf8.ValidString(s.val) {
					c.errorf(s.pos, "string is not valid UTF-8")
					return false
				}
			}
		}
	}
	for i := range args {
		if a := &args[i]; a.kind == argStrings {
			constVals(n, a)
		}
	}
	n.mimeOpt = n.has("type") || n.has("subtype") || n.has("contenttype") || n.has("param")
	n.mime, n.anychild, n.last = n.has("mime"), n.has("anychild"), n.has("last")
	n.index, n.hasIndex = n.tagNum("index")
	return true
}

// constVals sets a.vals when no string of a refers to a variable, so that
// the interpreter does not copy the list at every run.
func constVals(n *node, a *argument) {
	vals := make([]string, len(a.strs))
	for i, s := range a.strs {
		if !n.constant(s.val) {
			return
		}
		vals[i] = s.val
	}
	a.vals = vals
}

func (c *checker) typeOK(a *argument, t argType) bool {
	switch t {
	case atString:
		return a.kind == argStrings && !a.isList
	case atStrings:
		return a.kind == argStrings
	case atNumber:
		return a.kind == argNumber
	}
	return false
}

// compileMatch settles match type, comparator and address part of a test.
func (c *checker) compileMatch(n *node, def *cmdDef) {
	hasMatch := false
	for _, set := range def.tags {
		if _, ok := set["is"]; ok {
			hasMatch = true
		}
	}
	if !hasMatch {
		return
	}
	n.mt = mtIs
	for name, mt := range map[string]matchType{"is": mtIs, "contains": mtContains, "matches": mtMatches, "regex": mtRegex, "count": mtCount, "value": mtValue} {
		if a, ok := n.tags[name]; ok {
			n.mt = mt
			if mt == mtCount || mt == mtValue {
				n.rel = lower(a.strs[0].val)
				if !validRel(n.rel) {
					c.errorf(a.pos, "invalid relational match %q (use gt, ge, lt, le, eq or ne)", a.strs[0].val)
				}
			}
		}
	}
	n.cmp = cmpCasemap
	if a, ok := n.tags["comparator"]; ok {
		name := lower(a.strs[0].val)
		switch name {
		case "i;octet":
			n.cmp = cmpOctet
		case "i;ascii-casemap":
			n.cmp = cmpCasemap
		case "i;ascii-numeric":
			if !c.has("comparator-i;ascii-numeric") {
				c.errorf(a.pos, "comparator i;ascii-numeric requires extension \"comparator-i;ascii-numeric\"")
			}
			n.cmp = cmpNumeric
		default:
			c.errorf(a.pos, "unknown comparator %q", a.strs[0].val)
		}
	}
	if n.cmp == cmpNumeric && (n.mt == mtContains || n.mt == mtMatches || n.mt == mtRegex) {
		c.errorf(n.pos, "comparator i;ascii-numeric does not support this match type")
	}
	n.ap = "all"
	for _, p := range []string{"localpart", "domain", "user", "detail"} {
		if n.has(p) {
			n.ap = p
		}
	}
	if n.has("last") && !n.has("index") && (n.name == "header" || n.name == "address" || n.name == "date") {
		c.errorf(n.tags["last"].pos, "tag :last needs :index")
	}
	if v, ok := n.tagNum("index"); ok && v < 1 {
		c.errorf(n.tags["index"].pos, ":index must be 1 or more")
	}
	// Constant regular expressions are compiled once, here.
	// (Not for hasflag: its keys are split into flags at run time.)
	if n.mt == mtRegex && n.name != "hasflag" && len(n.args) > 0 && n.args[len(n.args)-1] != nil {
		keys := n.args[len(n.args)-1]
		for _, s := range keys.strs {
			if n.vars && strings.Contains(s.val, "${") {
				n.keyRE = nil
				break
			}
			if len(s.val) > c.limits.maxRegex() {
				c.errorf(s.pos, "regular expression longer than %d bytes", c.limits.maxRegex())
				return
			}
			re, err := compileRegex(s.val, n.cmp)
			if err != nil {
				c.errorf(s.pos, "invalid regular expression: %v", err)
				return
			}
			n.keyRE = append(n.keyRE, re)
		}
	}
}

func validRel(r string) bool {
	switch r {
	case "gt", "ge", "lt", "le", "eq", "ne":
		return true
	}
	return false
}

// constant reports whether a string holds no variable reference.
func (n *node) constant(s string) bool { return !n.vars || !strings.Contains(s, "${") }

func checkRedirect(c *checker, n *node) {
	s := n.args[0].strs[0]
	if n.constant(s.val) {
		if _, err := parseMailbox(s.val); err != nil {
			c.errorf(s.pos, "redirect: invalid address %q", s.val)
		}
	}
}

func checkFileinto(c *checker, n *node) {
	if a, ok := n.tags["specialuse"]; ok {
		checkSpecialUseAttr(c, a.strs[0], n.constant(a.strs[0].val))
	}
	// An empty or otherwise unusable mailbox name is not refused here:
	// Pigeonhole accepts it, and delivery falls back to INBOX when the
	// store fails (RFC 5228 section 4.1).
}

func checkFlagVar(c *checker, n *node) {
	if n.args[0] != nil {
		if !c.has("variables") {
			c.errorf(n.args[0].pos, "%s with a variable name requires extension \"variables\"", n.name)
			return
		}
		checkVarName(c, n.args[0].strs[0])
	}
}

func checkHasflag(c *checker, n *node) {
	if n.args[0] != nil {
		if !c.has("variables") {
			c.errorf(n.args[0].pos, "hasflag with a variable list requires extension \"variables\"")
			return
		}
		for _, s := range n.args[0].strs {
			checkVarName(c, s)
		}
	}
}

// checkVarName checks a variable name (RFC 5229 section 3: identifier).
func checkVarName(c *checker, s sstring) {
	if !validIdent(s.val) {
		c.errorf(s.pos, "invalid variable name %q", s.val)
	}
}

func validIdent(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if !(isAlpha(ch) || ch == '_' || (i > 0 && isDigit(ch))) {
			return false
		}
	}
	return true
}

var modifierPrec = map[string]int{
	"lower": 40, "upper": 40, "lowerfirst": 30, "upperfirst": 30,
	"quotewildcard": 20, "quoteregex": 20, "encodeurl": 15, "length": 10,
}

func checkSet(c *checker, n *node) {
	checkVarName(c, n.args[0].strs[0])
	checkModifiers(c, n)
}

func checkModifiers(c *checker, n *node) {
	seen := map[int]string{}
	for _, t := range []string{"lower", "upper", "lowerfirst", "upperfirst", "quotewildcard", "quoteregex", "encodeurl", "length"} {
		a, ok := n.tags[t]
		if !ok {
			continue
		}
		p := modifierPrec[t]
		if o, ok := seen[p]; ok {
			c.errorf(a.pos, "modifiers :%s and :%s cannot be combined (same precedence, RFC 5229 section 4)", t, o)
		}
		seen[p] = t
	}
}

func checkVacation(c *checker, n *node) {
	if s, ok := n.tagStr("from"); ok && n.constant(s.val) {
		if _, err := parseMailbox(s.val); err != nil {
			c.errorf(s.pos, "vacation :from: invalid address %q", s.val)
		}
	}
	// :addresses are not checked: Pigeonhole accepts any string there, and
	// one that is no address only never matches.
	// :days and :seconds out of range are clamped at run time (RFC 5230
	// section 4.1), as Pigeonhole does after a warning.
	if !n.has("handle") {
		// The implicit handle of texts without variables is the same at
		// every run: worked out once, here.
		reason := n.args[0].strs[0]
		subject, _ := n.tagStr("subject")
		from, _ := n.tagStr("from")
		if n.constant(reason.val) && n.constant(subject.val) && n.constant(from.val) {
			n.vacHandle = vacationHandle(reason.val, subject.val, from.val, n.has("mime"))
		}
	}
}

func checkInclude(c *checker, n *node) {
	s := n.args[0].strs[0]
	if !n.constant(s.val) {
		c.errorf(s.pos, "include: the script name must be a constant string")
		return
	}
	if !validScriptName(s.val) {
		c.errorf(s.pos, "include: invalid script name %q", s.val)
	}
}

// validScriptName refuses names that could name a path outside the
// loader's directory (RFC 6609 section 3.2 leaves names to the
// implementation; ManageSieve names exclude "/" as Pigeonhole does).
func validScriptName(s string) bool {
	if s == "" || len(s) > 255 || strings.ContainsAny(s, "/\\\x00") || s == "." || s == ".." || strings.HasPrefix(s, ".") {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

func checkGlobal(c *checker, n *node) {
	if !c.has("variables") {
		c.errorf(n.pos, "global requires extension \"variables\"")
		return
	}
	for _, s := range n.args[0].strs {
		checkVarName(c, s)
	}
}

// validFieldName checks a header field name (RFC 5322 section 3.6.8).
func validFieldName(s string) bool {
	if s == "" || len(s) > 998 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= 32 || s[i] >= 127 || s[i] == ':' {
			return false
		}
	}
	return true
}

// checkHeaderNames accepts any name: a name that cannot occur in a header
// ("", "a b") matches nothing. Pigeonhole only warns about such names, and
// the scripts it accepts must compile here too.
func checkHeaderNames(idx int) func(*checker, *node) {
	return func(c *checker, n *node) {}
}

func checkEnvelope(c *checker, n *node) {
	for _, s := range n.args[0].strs {
		if !n.constant(s.val) {
			continue
		}
		switch lower(s.val) {
		case "from", "to", "auth", "orig_to":
		default:
			c.errorf(s.pos, "envelope part %q is not supported (use \"from\" or \"to\")", s.val)
		}
	}
}

func checkSize(c *checker, n *node) {
	if !n.has("over") && !n.has("under") {
		c.errorf(n.pos, "size needs :over or :under")
	}
}

func checkAddheader(c *checker, n *node) {
	s := n.args[0].strs[0]
	if n.constant(s.val) && !validFieldName(s.val) {
		c.errorf(s.pos, "addheader: invalid header field name %q", s.val)
	}
	v := n.args[1].strs[0]
	if n.constant(v.val) && !validFieldValue(v.val) {
		c.errorf(v.pos, "addheader: invalid header field value")
	}
}

func validFieldValue(s string) bool {
	return !strings.ContainsAny(s, "\x00") && len(s) <= 1<<16
}

func checkDeleteheader(c *checker, n *node) {
	// An invalid name deletes nothing (as Pigeonhole).
	if n.has("last") && !n.has("index") {
		c.errorf(n.tags["last"].pos, "deleteheader: :last needs :index")
	}
	if v, ok := n.tagNum("index"); ok && v < 1 {
		c.errorf(n.tags["index"].pos, "deleteheader: :index must be 1 or more")
	}
}

var dateParts = map[string]bool{
	"year": true, "month": true, "day": true, "date": true, "julian": true,
	"hour": true, "minute": true, "second": true, "time": true,
	"iso8601": true, "std11": true, "zone": true, "weekday": true,
}

func checkDate(c *checker, n *node) {
	// An unknown date part is not an error: the test is false (RFC 5260
	// section 4.2; Pigeonhole only warns, and scripts it accepts must
	// compile here too).
	if z, ok := n.tagStr("zone"); ok && n.constant(z.val) {
		if _, ok := parseZone(z.val); !ok {
			c.errorf(z.pos, "invalid time zone %q (use +hhmm or -hhmm)", z.val)
		}
	}
	if n.name == "date" {
		checkHeaderNames(0)(c, n)
	}
}

// decodeEncodedCharacter replaces "${hex:...}" and "${unicode:...}"
// (RFC 5228 section 2.4.2.4). A sequence that does not parse stays as it
// is, as the RFC says; a Unicode value that is not a character is an error.
func decodeEncodedCharacter(s string) (string, string) {
	if !strings.Contains(s, "${") {
		return s, ""
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), ""
		}
		b.WriteString(s[:i])
		rest := s[i+2:]
		j := strings.IndexByte(rest, '}')
		colon := strings.IndexByte(rest, ':')
		if j < 0 || colon < 0 || colon > j {
			b.WriteString("${")
			s = rest
			continue
		}
		kind := lower(rest[:colon])
		body := rest[colon+1 : j]
		var out []byte
		ok := kind == "hex" || kind == "unicode"
		if ok {
			for _, f := range strings.FieldsFunc(body, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' || r == '\n' }) {
				v, err := strconv.ParseUint(f, 16, 32)
				if err != nil || (kind == "hex" && v > 255) {
					ok = false
					break
				}
				if kind == "hex" {
					out = append(out, byte(v))
				} else {
					if v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF) {
						return "", "encoded-character: invalid Unicode character " + f
					}
					out = utf8.AppendRune(out, rune(v))
				}
			}
			if len(out) == 0 {
				ok = false
			}
		}
		if !ok {
			b.WriteString("${")
			s = rest
			continue
		}
		b.Write(out)
		s = rest[j+1:]
	}
}

// isAddressHeader is addressHeaders[lower(name)], without allocating.
func isAddressHeader(name string) bool {
	var buf [32]byte
	l, ok := lowerName(buf[:0], name)
	return ok && addressHeaders[string(l)]
}

// addressHeaders are the fields the address test accepts: RFC 5228
// section 5.1 requires restricting it to fields that hold addresses; the
// list is Pigeonhole's, so that scripts it refuses are refused here too.
var addressHeaders = map[string]bool{
	"from": true, "sender": true, "reply-to": true, "to": true, "cc": true,
	"bcc": true, "resent-from": true, "resent-sender": true,
	"resent-reply-to": true, "resent-to": true, "resent-cc": true,
	"resent-bcc": true, "delivered-to": true, "errors-to": true,
	"x-original-to": true, "x-beenthere": true, "mail-followup-to": true,
	"mail-reply-to": true, "apparently-to": true, "return-receipt-to": true,
	"disposition-notification-to": false,
}

func checkAddressHeaders(c *checker, n *node) {
	checkMimeTags(c, n)
	for _, s := range n.args[0].strs {
		if n.constant(s.val) && validFieldName(s.val) && !addressHeaders[lower(s.val)] {
			c.errorf(s.pos, "header %q is not allowed for the address test (it holds no addresses)", s.val)
		}
	}
}

func checkNotify(c *checker, n *node) {
	m := n.args[0].strs[0]
	if n.constant(m.val) {
		if _, err := parseMailtoURI(m.val); err != nil {
			c.errorf(m.pos, "notify: %v", err)
		}
	}
	if s, ok := n.tagStr("importance"); ok && n.constant(s.val) && s.val != "1" && s.val != "2" && s.val != "3" {
		c.errorf(s.pos, "notify: :importance must be \"1\", \"2\" or \"3\"")
	}
	if s, ok := n.tagStr("from"); ok && n.constant(s.val) {
		if _, err := parseMailbox(s.val); err != nil {
			c.errorf(s.pos, "notify :from: invalid address %q", s.val)
		}
	}
}

// checkMimeTags: :anychild and the :type family need :mime (RFC 5703
// section 4.1).
func checkMimeTags(c *checker, n *node) {
	if n.has("mime") {
		return
	}
	for _, t := range []string{"anychild", "type", "subtype", "contenttype", "param"} {
		if a, ok := n.tags[t]; ok {
			c.errorf(a.pos, "tag :%s needs :mime", t)
			return
		}
	}
}

func checkBreak(c *checker, n *node) {
	if len(c.loops) == 0 {
		c.errorf(n.pos, "break outside foreverypart")
		return
	}
	if s, ok := n.tagStr("name"); ok {
		for _, l := range c.loops {
			if l == s.val {
				return
			}
		}
		c.errorf(s.pos, "break :name %q names no enclosing foreverypart", s.val)
	}
}

func checkExtracttext(c *checker, n *node) {
	if !c.has("variables") {
		c.errorf(n.pos, "extracttext requires extension \"variables\"")
	}
	if !c.has("foreverypart") {
		c.errorf(n.pos, "extracttext requires extension \"foreverypart\"")
	}
	if len(c.loops) == 0 {
		c.errorf(n.pos, "extracttext outside foreverypart")
	}
	checkVarName(c, n.args[0].strs[0])
	checkModifiers(c, n)
}

// checkSpecialUseAttr: a special-use attribute is "\\" and an atom (RFC
// 6154 section 2, RFC 8579 section 3).
func checkSpecialUseAttr(c *checker, s sstring, constant bool) {
	if constant && !validSpecialUse(s.val) {
		c.errorf(s.pos, "invalid special-use attribute %q", s.val)
	}
}

func validSpecialUse(s string) bool {
	if len(s) < 2 || s[0] != '\\' {
		return false
	}
	for i := 1; i < len(s); i++ {
		ch := s[i]
		if ch <= ' ' || ch >= 0x7f || strings.IndexByte(`(){%*"\\]`, ch) >= 0 {
			return false
		}
	}
	return true
}

func checkSpecialUse(c *checker, n *node) {
	for _, s := range n.args[1].strs {
		checkSpecialUseAttr(c, s, n.constant(s.val))
	}
}
