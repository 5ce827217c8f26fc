package sql

import (
	"reflect"
	"strings"
	"testing"

	"github.com/lmtpd/lmtpd/directory"
)

func TestCompile(t *testing.T) {
	A, L, D, X := directory.FieldAddress, directory.FieldLocalPart, directory.FieldDomain, directory.FieldDetail
	tests := []struct {
		name, src        string
		dollar, question string
		dargs, qargs     []directory.Field
		err              string
	}{
		{name: "one", src: "SELECT maildir AS mailbox FROM mailbox WHERE username = {address} AND active",
			dollar: "SELECT maildir AS mailbox FROM mailbox WHERE username = $1 AND active", dargs: []directory.Field{A},
			question: "SELECT maildir AS mailbox FROM mailbox WHERE username = ? AND active", qargs: []directory.Field{A}},
		{name: "repeated", src: "SELECT goto FROM alias WHERE address = {address} UNION SELECT t FROM f WHERE s = {address} OR (u = {localpart} AND d = {domain}) -- {{x}}\n AND x = {detail}",
			dollar: "SELECT goto FROM alias WHERE address = $1 UNION SELECT t FROM f WHERE s = $1 OR (u = $2 AND d = $3) -- {x}\n AND x = $4", dargs: []directory.Field{A, L, D, X},
			question: "SELECT goto FROM alias WHERE address = ? UNION SELECT t FROM f WHERE s = ? OR (u = ? AND d = ?) -- {x}\n AND x = ?", qargs: []directory.Field{A, A, L, D, X}},
		{name: "quotes elsewhere", src: `SELECT 'it''s' AS "a b", ` + "`c`" + ` FROM t /* c */ WHERE u = {user}`,
			dollar: `SELECT 'it''s' AS "a b", ` + "`c`" + ` FROM t /* c */ WHERE u = $1`, dargs: []directory.Field{L},
			question: `SELECT 'it''s' AS "a b", ` + "`c`" + ` FROM t /* c */ WHERE u = ?`, qargs: []directory.Field{L}},
		{name: "no placeholder", src: "SELECT 1", dollar: "SELECT 1", question: "SELECT 1"},
		{name: "dovecot quoting", src: "SELECT password FROM mailbox WHERE username = '{address}'", err: "inside a quoted string"},
		{name: "in identifier", src: `SELECT "{domain}" FROM t`, err: "inside a quoted identifier"},
		{name: "in line comment", src: "SELECT 1 -- {address}", err: "inside a comment"},
		{name: "in block comment", src: "SELECT 1 /* {address} */", err: "inside a comment"},
		{name: "after block comment", src: "SELECT 1 /* x */ WHERE a = {address}", dollar: "SELECT 1 /* x */ WHERE a = $1", dargs: []directory.Field{A},
			question: "SELECT 1 /* x */ WHERE a = ?", qargs: []directory.Field{A}},
		{name: "unknown placeholder", src: "SELECT 1 WHERE u = {username}", err: "unknown placeholder {username}"},
		{name: "dovecot variable is text", src: "SELECT 1 WHERE u = '%u'", dollar: "SELECT 1 WHERE u = '%u'", question: "SELECT 1 WHERE u = '%u'"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, st := range []style{styleDollar, styleQuestion} {
				q, err := compile(tc.src, st)
				if tc.err != "" {
					if err == nil || !strings.Contains(err.Error(), tc.err) {
						t.Fatalf("compile(%q) error = %v, want %q", tc.src, err, tc.err)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				want, wargs := tc.dollar, tc.dargs
				if st == styleQuestion {
					want, wargs = tc.question, tc.qargs
				}
				if q.text != want || !reflect.DeepEqual(q.args, wargs) {
					t.Errorf("style %d: %q %v\nwant     %q %v", st, q.text, q.args, want, wargs)
				}
			}
		})
	}
}

func TestBind(t *testing.T) {
	q, err := compile("SELECT 1 WHERE a = {address} AND d = {domain} AND a2 = {address}", styleQuestion)
	if err != nil {
		t.Fatal(err)
	}
	hostile := "x' OR '1'='1@d"
	got := q.bind(directory.Key{Address: hostile, Domain: "d"})
	if !reflect.DeepEqual(got, []any{hostile, "d", hostile}) {
		t.Errorf("bind = %q", got)
	}
	if strings.Contains(q.text, "OR") {
		t.Errorf("value reached the query text: %q", q.text)
	}
}

func FuzzCompile(f *testing.F) {
	for _, s := range []string{"SELECT a FROM t WHERE u = {address}", "'{address}'", "/* {x} */ {domain}", "--\n{user}", "`{{`"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, st := range []style{styleDollar, styleQuestion} {
			q, err := compile(s, st)
			if err != nil {
				continue
			}
			// Every placeholder became a parameter: no placeholder syntax
			// for a known field survives unescaped, and the count fits.
			n := strings.Count(q.text, "?")
			if st == styleQuestion && n < len(q.args) {
				t.Fatalf("%q: %d parameters, %d args", q.text, n, len(q.args))
			}
		}
	})
}
