package main

import (
	"strconv"
	"strings"
)

// locator maps key paths of a TOML document ("listener[1].address") to the
// line that defines them, so that configuration errors can name a line.
//
// BurntSushi/toml reports positions only for syntax errors and remembers
// one position per key name, so the second [[listener]]'s keys would point
// at the last one's lines. The locator therefore scans the text itself:
// table headers, array-of-tables headers (counted per parent element),
// and "key =" lines, skipping strings, comments and multi-line values. It
// runs only on text the TOML parser accepted, so it need not diagnose
// anything.
type locator struct {
	lines map[string]int
}

// line returns the line of path, or of its nearest ancestor that is
// recorded (a key inside an inline table or an array element reports the
// line of the key that holds it); 0 if none is.
func (l *locator) line(path string) int {
	if l == nil {
		return 0
	}
	for path != "" {
		if n, ok := l.lines[path]; ok {
			return n
		}
		path = parentPath(path)
	}
	return 0
}

// parentPath strips the last component of a key path: ".key" or "[i]".
func parentPath(path string) string {
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i]
		}
	}
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[:i]
	}
	return ""
}

// joinKey appends a key to a path.
func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// indexKey appends an array index to a path.
func indexKey(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// newLocator scans text. See locator.
func newLocator(text string) *locator {
	l := &locator{lines: make(map[string]int)}
	counts := make(map[string]int) // concrete array-of-tables path -> elements seen
	table := ""                    // concrete path of the current table
	var st valueScan
	record := func(path string, n int) {
		if _, ok := l.lines[path]; !ok {
			l.lines[path] = n
		}
	}
	// concrete resolves a header's key components against the arrays of
	// tables seen so far: [domain.route] after two [[domain]] is
	// domain[1].route.
	concrete := func(keys []string) string {
		p := ""
		for _, k := range keys {
			p = joinKey(p, k)
			if c := counts[p]; c > 0 {
				p = indexKey(p, c-1)
			}
		}
		return p
	}
	for i, raw := range strings.Split(text, "\n") {
		n := i + 1
		if st.inValue() {
			st.scan(raw)
			continue
		}
		line := strings.TrimSpace(raw)
		switch {
		case line == "" || line[0] == '#':
			continue
		case strings.HasPrefix(line, "[["):
			keys, _ := parseKeys(line[2:])
			if len(keys) == 0 {
				continue
			}
			parent := concrete(keys[:len(keys)-1])
			arr := joinKey(parent, keys[len(keys)-1])
			record(arr, n)
			counts[arr]++
			table = indexKey(arr, counts[arr]-1)
			record(table, n)
		case line[0] == '[':
			keys, _ := parseKeys(line[1:])
			if len(keys) == 0 {
				continue
			}
			table = concrete(keys)
			record(table, n)
		default:
			keys, rest := parseKeys(line)
			if len(keys) == 0 {
				continue
			}
			p := table
			for _, k := range keys {
				p = joinKey(p, k)
				record(p, n)
			}
			if r := strings.TrimLeft(rest, " \t"); strings.HasPrefix(r, "=") {
				st.scan(r[1:])
			}
		}
	}
	return l
}

// parseKeys parses a dotted key (bare or quoted parts) at the start of s
// and returns its parts and what follows.
func parseKeys(s string) ([]string, string) {
	var keys []string
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return keys, s
		}
		var k string
		switch s[0] {
		case '"':
			end := 1
			for end < len(s) && s[end] != '"' {
				if s[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(s) {
				return keys, ""
			}
			if u, err := strconv.Unquote(s[:end+1]); err == nil {
				k = u
			} else {
				k = s[1:end]
			}
			s = s[end+1:]
		case '\'':
			end := strings.IndexByte(s[1:], '\'')
			if end < 0 {
				return keys, ""
			}
			k = s[1 : end+1]
			s = s[end+2:]
		default:
			end := 0
			for end < len(s) && isBareKeyByte(s[end]) {
				end++
			}
			if end == 0 {
				return keys, s
			}
			k = s[:end]
			s = s[end:]
		}
		keys = append(keys, k)
		s = strings.TrimLeft(s, " \t")
		if !strings.HasPrefix(s, ".") {
			return keys, s
		}
		s = s[1:]
	}
}

func isBareKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// valueScan follows a value across lines: open brackets and braces, and
// multi-line strings.
type valueScan struct {
	depth int
	ml    string // `"""` or `'''` while inside a multi-line string
}

func (v *valueScan) inValue() bool { return v.depth > 0 || v.ml != "" }

// scan consumes one line (or the rest of one) of a value.
func (v *valueScan) scan(s string) {
	for i := 0; i < len(s); i++ {
		if v.ml != "" {
			if v.ml == `"""` && s[i] == '\\' {
				i++
				continue
			}
			if strings.HasPrefix(s[i:], v.ml) {
				i += 2
				// A closing delimiter may be followed by up to two more
				// quotes that belong to the string.
				for i+1 < len(s) && s[i+1] == v.ml[0] {
					i++
				}
				v.ml = ""
			}
			continue
		}
		switch c := s[i]; c {
		case '#':
			return
		case '"', '\'':
			if strings.HasPrefix(s[i:], `"""`) || strings.HasPrefix(s[i:], `'''`) {
				v.ml = s[i : i+3]
				i += 2
				continue
			}
			for i++; i < len(s) && s[i] != c; i++ {
				if c == '"' && s[i] == '\\' {
					i++
				}
			}
		case '[', '{':
			v.depth++
		case ']', '}':
			if v.depth > 0 {
				v.depth--
			}
		}
	}
}
