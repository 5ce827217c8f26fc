package sql

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/lmtpd/lmtpd/directory"
)

// style is how a driver spells bind parameters.
type style int

const (
	styleDollar   style = iota // PostgreSQL: $1, $2, ... (a placeholder used twice reuses its number)
	styleQuestion              // MySQL/MariaDB, SQLite: ? per occurrence
)

// query is a configured query with its placeholders turned into bind
// parameters: text is sent as it is, args says which Key field each
// parameter takes. No value is ever spliced into text.
type query struct {
	src  string
	text string
	args []directory.Field
}

// compile parses src and replaces each placeholder with a bind parameter
// in the driver's style. A placeholder inside a quoted string or a
// comment is an error: it would not be a parameter there, and quoting it
// (Dovecot's '%u' habit) is exactly what must not be written.
func compile(src string, st style) (query, error) {
	t, err := directory.ParseTemplate(src)
	if err != nil {
		return query{}, err
	}
	q := query{src: src}
	var b strings.Builder
	num := make(map[directory.Field]int)
	var lx lexState
	for _, p := range t.Parts() {
		if p.Field == 0 {
			// Literal text is scanned for quotes and comments so a
			// following placeholder knows where it stands; "{{" was
			// already turned into "{".
			lx.scan(p.Literal)
			b.WriteString(p.Literal)
			continue
		}
		if where := lx.inside(); where != "" {
			return query{}, fmt.Errorf("placeholder {%s} is inside a %s in %q: write it bare, without quotes (it becomes a bind parameter, never text)", p.Field, where, src)
		}
		switch st {
		case styleDollar:
			n, ok := num[p.Field]
			if !ok {
				q.args = append(q.args, p.Field)
				n = len(q.args)
				num[p.Field] = n
			}
			b.WriteString("$" + strconv.Itoa(n))
		case styleQuestion:
			q.args = append(q.args, p.Field)
			b.WriteString("?")
		}
	}
	q.text = b.String()
	return q, nil
}

// bind returns the parameter values for k.
func (q query) bind(k directory.Key) []any {
	args := make([]any, len(q.args))
	for i, f := range q.args {
		args[i] = k.Value(f)
	}
	return args
}

// lexState follows SQL quoting across literal pieces: '...' strings
// (a doubled quote inside), "..." and `...` identifiers, -- line comments, /* */
// comments. It is only used to refuse placeholders in them; the server
// parses the query (and reports an unterminated string). Getting it
// wrong in some dialect's corner (MySQL's \' escape) can only refuse a
// query or make the server count parameters differently and fail: the
// values are bound either way.
type lexState struct {
	in   byte // 0, '\'', '"', '`', '-' (line comment), '*' (block comment)
	prev byte
}

func (l *lexState) scan(s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch l.in {
		case 0:
			switch {
			case c == '\'' || c == '"' || c == '`':
				l.in = c
			case c == '-' && l.prev == '-':
				l.in = '-'
			case c == '*' && l.prev == '/':
				l.in = '*'
				c = 0 // "/*/" does not close
			}
		case '-':
			if c == '\n' {
				l.in = 0
			}
		case '*':
			if c == '/' && l.prev == '*' {
				l.in = 0
				c = 0
			}
		default:
			if c == l.in {
				l.in = 0 // a doubled quote reopens at the next byte, which is right
			}
		}
		l.prev = c
	}
}

func (l *lexState) inside() string {
	switch l.in {
	case '\'':
		return "quoted string"
	case '"', '`':
		return "quoted identifier"
	case '-', '*':
		return "comment"
	}
	return ""
}
