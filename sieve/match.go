package sieve

import (
	"regexp"
	"strconv"
	"strings"
)

// matchType is the match type of a test (RFC 5228 section 2.7.1, RFC 5231,
// draft-ietf-sieve-regex).
type matchType int

const (
	mtIs matchType = iota
	mtContains
	mtMatches
	mtRegex
	mtCount
	mtValue
)

// comparator is one of the comparators of RFC 4790 that Sieve names
// (RFC 5228 section 2.7.3).
type comparator int

const (
	cmpCasemap comparator = iota // i;ascii-casemap, the default
	cmpOctet                     // i;octet
	cmpNumeric                   // i;ascii-numeric (RFC 4790 section 9.1)
)

func foldASCII(s string) string {
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

// numericKey returns the digits of the leading number of s without leading
// zeros, or ok=false when s does not start with a digit: RFC 4790 section
// 9.1 then treats it as positive infinity.
func numericKey(s string) (string, bool) {
	end := 0
	for end < len(s) && isDigit(s[end]) {
		end++
	}
	if end == 0 {
		return "", false
	}
	d := strings.TrimLeft(s[:end], "0")
	return d, true
}

// compare orders a and b under the comparator: -1, 0 or 1.
func (c comparator) compare(a, b string) int {
	switch c {
	case cmpOctet:
		return strings.Compare(a, b)
	case cmpNumeric:
		ka, oka := numericKey(a)
		kb, okb := numericKey(b)
		switch {
		case !oka && !okb:
			return 0
		case !oka:
			return 1
		case !okb:
			return -1
		}
		if len(ka) != len(kb) {
			if len(ka) < len(kb) {
				return -1
			}
			return 1
		}
		return strings.Compare(ka, kb)
	}
	return compareFold(a, b)
}

func (c comparator) equal(a, b string) bool {
	switch c {
	case cmpOctet:
		return a == b
	case cmpNumeric:
		return c.compare(a, b) == 0
	}
	return equalFold(a, b)
}

func (c comparator) contains(hay, needle string) bool {
	if c == cmpOctet {
		return strings.Contains(hay, needle)
	}
	return containsFoldASCII(hay, needle)
}

// The casemap comparisons below give the results of comparing the
// foldASCII forms (i;ascii-casemap, RFC 4790 section 9.2: only A-Z fold)
// without building them: a script's keys are compared with every value
// of every test, and each folded copy was an allocation.

// equalFold reports whether a and b are equal once ASCII letters are
// folded. Unlike strings.EqualFold it folds nothing outside A-Z.
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if x, y := a[i], b[i]; x != y && foldByte(x) != foldByte(y) {
			return false
		}
	}
	return true
}

// compareFold is strings.Compare(foldASCII(a), foldASCII(b)).
func compareFold(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		x, y := foldByte(a[i]), foldByte(b[i])
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}

// containsFoldMax bounds the work of containsFoldASCII's search in place
// (len(hay)·len(needle) byte comparisons at worst); past it, a body part
// for example, both are folded and strings.Contains, linear whatever the
// needle, searches.
const containsFoldMax = 1 << 14

// containsFoldASCII is strings.Contains(foldASCII(hay), foldASCII(needle)).
func containsFoldASCII(hay, needle string) bool {
	if !hasUpper(hay) && !hasUpper(needle) {
		return strings.Contains(hay, needle)
	}
	if len(hay)*len(needle) > containsFoldMax {
		return strings.Contains(foldASCII(hay), foldASCII(needle))
	}
	if len(needle) == 0 {
		return true
	}
	c0 := foldByte(needle[0])
	for i := 0; i+len(needle) <= len(hay); i++ {
		if foldByte(hay[i]) == c0 && equalFold(hay[i+1:i+len(needle)], needle[1:]) {
			return true
		}
	}
	return false
}

// hasUpper reports whether s has an ASCII capital letter.
func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return true
		}
	}
	return false
}

func relHolds(rel string, cmp int) bool {
	switch rel {
	case "gt":
		return cmp > 0
	case "ge":
		return cmp >= 0
	case "lt":
		return cmp < 0
	case "le":
		return cmp <= 0
	case "eq":
		return cmp == 0
	case "ne":
		return cmp != 0
	}
	return false
}

type globTok struct {
	kind byte // 'l' literal, '*', '?'
	c    byte
}

// globTokens appends the tokens of pat to toks.
func globTokens(toks []globTok, pat string) []globTok {
	for i := 0; i < len(pat); i++ {
		switch pat[i] {
		case '*':
			toks = append(toks, globTok{kind: '*'})
		case '?':
			toks = append(toks, globTok{kind: '?'})
		case '\\':
			if i+1 < len(pat) {
				i++
			}
			toks = append(toks, globTok{kind: 'l', c: pat[i]})
		default:
			toks = append(toks, globTok{kind: 'l', c: pat[i]})
		}
	}
	return toks
}

func foldByte(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// glob matches val against a :matches pattern (RFC 5228 section 2.7.1:
// "*" any sequence, "?" one character, "\" escapes). The comparators
// i;octet and i;ascii-casemap work on octets (RFC 4790 sections 9.1 and
// 9.2), so "?" is one octet, as in Pigeonhole. It runs in
// O(len(val)·len(pat)) without recursion: on a mismatch only the last
// "*" grows, which also makes earlier wildcards match as little as
// possible. With wantCaps, it returns the text of each wildcard in order,
// for the match variables of RFC 5229 section 3.2 (${0} is the whole
// value). work counts the rounds, for the step budget.
func glob(val, pat string, fold bool, wantCaps bool) (bool, []string, int) {
	// Patterns are short: their tokens and the wildcards' starts fit on
	// the stack.
	var tokBuf [64]globTok
	var startBuf [65]int
	p := globTokens(tokBuf[:0], pat)
	var starts []int
	if len(p)+1 > len(startBuf) {
		starts = make([]int, len(p)+1)
	} else {
		starts = startBuf[:len(p)+1]
	}
	i, j := 0, 0
	starJ, starI := -1, 0
	work := 0
	for i < len(val) {
		work++
		if j < len(p) && p[j].kind == '*' {
			starJ, starI = j, i
			starts[j] = i
			j++
			continue
		}
		if j < len(p) && (p[j].kind == '?' || p[j].c == val[i] || (fold && foldByte(p[j].c) == foldByte(val[i]))) {
			starts[j] = i
			i++
			j++
			continue
		}
		if starJ >= 0 {
			starI++
			i = starI
			j = starJ + 1
			continue
		}
		return false, nil, work
	}
	for j < len(p) && p[j].kind == '*' {
		starts[j] = i
		j++
	}
	if j != len(p) {
		return false, nil, work
	}
	if !wantCaps {
		return true, nil, work
	}
	starts[len(p)] = len(val)
	caps := []string{val}
	for k, t := range p {
		switch t.kind {
		case '*':
			caps = append(caps, val[starts[k]:starts[k+1]])
		case '?':
			caps = append(caps, val[starts[k]:starts[k]+1])
		}
	}
	return true, caps, work
}

// compileRegex compiles a :regex key. Go's RE2 syntax stands for POSIX
// extended regular expressions (draft-ietf-sieve-regex section 3); the
// casemap comparator makes it case-insensitive.
func compileRegex(pat string, c comparator) (*regexp.Regexp, error) {
	if c == cmpCasemap {
		pat = "(?i)" + pat
	}
	return regexp.Compile(pat)
}

// quoteWildcard escapes "*", "?" and "\" (RFC 5229 section 4.1).
func quoteWildcard(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r == '*' || r == '?' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func itoa(n int) string { return strconv.Itoa(n) }
