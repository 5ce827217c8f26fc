package delivery

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"

	"github.com/lmtpd/lmtpd/sieve"
)

// SieveScoreTest says where spamtest or virustest (RFC 5235) read the
// verdict of the filters that ran before delivery (a milter, the MTA's
// content filter), with the semantics of Pigeonhole's sieve_spamtest_*
// and sieve_virustest_* settings, so their values can be copied over.
// The zero value (no Header) turns the test off: it answers "0", not
// tested.
type SieveScoreTest struct {
	// Header is the field holding the verdict, optionally followed by
	// ":" and a regular expression (RE2 syntax, POSIX classes such as
	// [[:digit:]] allowed) whose first group is the status:
	// "X-Spam-Score", or "X-Spam-Status: score=(-?[0-9]+\.[0-9]+)"
	// (Pigeonhole's status_header). The first such field of the message
	// counts; a message without it, or whose value the expression does
	// not match, gets "0".
	Header string
	// Type is how the status reads: "score" (the default) a number,
	// "strlen" the length of a run such as "*****", "text" a word looked
	// up in TextValues (Pigeonhole's status_type).
	Type string
	// MaxValue is the status that means certainly spam (infected) for
	// score and strlen; MaxHeader reads it from the message instead, in
	// Header's syntax. At most one of them; neither means 10 for spamtest
	// and 5 for virustest. The test's value is then 1 + floor(9 *
	// status/max) for spamtest (floor(100 * status/max) with :percent), 1
	// + floor(4 * status/max) for virustest, status/max taken in 0..1.
	MaxValue  float64
	MaxHeader string
	// TextValues maps the status texts of Type "text" to their value,
	// 0..10 for spamtest and 0..5 for virustest, on the same scale as a
	// score (Pigeonhole's text_valueN: {"No" = 1, "Yes" = 10}). The text
	// must be equal (case-sensitive, surrounding spaces ignored); another
	// text gets "0".
	TextValues map[string]int
}

// Score test types (SieveScoreTest.Type).
const (
	ScoreTypeScore  = "score"
	ScoreTypeStrlen = "strlen"
	ScoreTypeText   = "text"
)

// check appends the problems of t, the settings of [sieve] keys with the
// given prefix ("Spamtest"), to fail. top is the top of TextValues' scale.
func (t *SieveScoreTest) check(prefix string, top int, fail func(k []string, format string, args ...any)) {
	k := func(name string) []string { return key("Sieve", prefix+name) }
	low := strings.ToLower(prefix)
	if t.Header == "" {
		set := ""
		switch {
		case t.Type != "":
			set = "Type"
		case t.MaxValue != 0:
			set = "MaxValue"
		case t.MaxHeader != "":
			set = "MaxHeader"
		case len(t.TextValues) > 0:
			set = "TextValues"
		}
		if set != "" {
			fail(k(set), "has no effect without %s_header, the field that holds the verdict", low)
		}
		return
	}
	if _, _, err := parseScoreHeader(t.Header); err != nil {
		fail(k("Header"), "%v", err)
	}
	switch t.Type {
	case "", ScoreTypeScore, ScoreTypeStrlen:
		if len(t.TextValues) > 0 {
			fail(k("TextValues"), "only for %s_type = %q", low, ScoreTypeText)
		}
		switch {
		case math.IsNaN(t.MaxValue) || math.IsInf(t.MaxValue, 0) || t.MaxValue < 0:
			fail(k("MaxValue"), "%v is not a positive number", t.MaxValue)
		case t.MaxValue > 0 && t.MaxHeader != "":
			fail(k("MaxValue"), "set together with %s_max_header: the maximum is one or the other", low)
		}
		if t.MaxHeader != "" {
			if _, _, err := parseScoreHeader(t.MaxHeader); err != nil {
				fail(k("MaxHeader"), "%v", err)
			}
		}
	case ScoreTypeText:
		if len(t.TextValues) == 0 {
			fail(k("TextValues"), "required with %s_type = %q: the texts and their values 0..%d", low, ScoreTypeText, top)
		}
		texts := make([]string, 0, len(t.TextValues))
		for text := range t.TextValues {
			texts = append(texts, text)
		}
		sort.Strings(texts)
		for _, text := range texts {
			if v := t.TextValues[text]; v < 0 || v > top {
				fail(k("TextValues"), "the value of %q is %d, not in 0..%d", text, v, top)
			}
			if strings.TrimSpace(text) == "" {
				fail(k("TextValues"), "an empty text")
			}
		}
		if t.MaxValue != 0 || t.MaxHeader != "" {
			fail(k("Type"), "%q takes no %s_max_value or %s_max_header: the texts' values are the scale", ScoreTypeText, low, low)
		}
	default:
		fail(k("Type"), "%q is not %q, %q or %q", t.Type, ScoreTypeScore, ScoreTypeStrlen, ScoreTypeText)
	}
}

// parseScoreHeader reads Pigeonhole's header specification: a field name,
// then optionally ":" and a regular expression with at least one group
// (spaces after the colon are not part of it).
func parseScoreHeader(spec string) (string, *regexp.Regexp, error) {
	s := strings.TrimLeft(spec, " \t")
	end := strings.IndexAny(s, ": \t")
	if end < 0 {
		end = len(s)
	}
	name, rest := s[:end], strings.TrimLeft(s[end:], " \t")
	if name == "" {
		return "", nil, fmt.Errorf("%q names no header field", spec)
	}
	for _, c := range []byte(name) {
		if c < 33 || c > 126 {
			return "", nil, fmt.Errorf("%q is not a header field name", name)
		}
	}
	if rest == "" {
		return name, nil, nil
	}
	if rest[0] != ':' {
		return "", nil, fmt.Errorf("%q: expecting \":\" and a regular expression after the field name", spec)
	}
	pat := strings.TrimLeft(rest[1:], " \t")
	if pat == "" {
		return name, nil, nil
	}
	re, err := regexp.Compile(pat)
	if err != nil {
		return "", nil, fmt.Errorf("%q: %v", pat, err)
	}
	if re.NumSubexp() == 0 {
		return "", nil, fmt.Errorf("%q has no group: its first (...) is the value read", pat)
	}
	return name, re, nil
}

// scoreConfig turns t into the sieve package's form; t passed check.
func (t *SieveScoreTest) scoreConfig(defMax float64) (string, sieve.ScoreConfig) {
	if t.Header == "" {
		return "", sieve.ScoreConfig{}
	}
	name, re, _ := parseScoreHeader(t.Header)
	c := sieve.ScoreConfig{Pattern: re, Max: t.MaxValue}
	switch t.Type {
	case ScoreTypeStrlen:
		c.Strlen = true
	case ScoreTypeText:
		c.TextValues = t.TextValues
		c.Max = 0
		return name, c
	}
	if t.MaxHeader != "" {
		c.MaxHeader, c.MaxPattern, _ = parseScoreHeader(t.MaxHeader)
	} else if c.Max <= 0 {
		c.Max = defMax
	}
	return name, c
}

// ScriptOptions returns the options scripts run with: the limits and the
// spamtest and virustest settings (sieve.Options). c must have passed
// Compile's checks; lmtpd sieve-test uses it to run a script as delivery
// would.
func (c *SieveConfig) ScriptOptions() *sieve.Options {
	o := &sieve.Options{MaxActions: c.MaxActions, MaxRedirects: c.MaxRedirects}
	var sc sieve.ScoreConfig
	o.SpamTest.Header, sc = c.Spamtest.scoreConfig(10)
	o.SpamTest.ScoreConfig = sc
	o.VirusTest.Header, sc = c.Virustest.scoreConfig(5)
	o.VirusTest.ScoreConfig = sc
	return o
}
