package sieve

import (
	"regexp"
	"time"
)

// Options are the run-time limits and the site policy of Execute. The zero
// value (or nil) uses the defaults written beside each field. Exceeding a
// limit is a RuntimeError; the caller then keeps the message.
type Options struct {
	// MaxActions bounds the actions of one run, implicit keep not counted
	// (default 32).
	MaxActions int
	// MaxRedirects bounds redirect actions (default 4).
	MaxRedirects int
	// MaxIncludeDepth bounds include nesting (default 10).
	MaxIncludeDepth int
	// MaxVariableSize bounds the value of a variable in bytes (default
	// 4096).
	MaxVariableSize int
	// MaxVariables bounds the number of distinct variables (default 256).
	MaxVariables int
	// MaxRegexSize bounds a regular expression built at run time (from
	// variables) in bytes (default 4096).
	MaxRegexSize int
	// MaxSteps is the work budget of one message (default 100000). A step
	// stands for about a microsecond of CPU at worst: each command, test
	// and comparison costs one, comparing strings one more per 256 bytes,
	// :matches one per 128 rounds of its matcher, :regex one per 4 bytes
	// searched (RE2's NFA may spend ~250 ns a byte), reading the body one
	// per 128 bytes. It bounds CPU time per message whatever the script:
	// about 0.1 s by default. A typical 30-rule script uses under 100
	// steps; a :regex over more than ~400 KB of text alone exceeds the
	// default.
	MaxSteps int
	// MaxBodySize is how much of the body the body test reads (default
	// 1 MiB); the rest is not searched.
	MaxBodySize int64
	// MaxHeaderEdits bounds addheader and deleteheader (default 64).
	MaxHeaderEdits int

	// SubaddressDelimiters are the characters that separate user and
	// detail (RFC 5233); the first one present splits. Default "+".
	SubaddressDelimiters string
	// ProtectedHeaders may not be added or deleted by editheader; the
	// attempt is ignored (RFC 5293 section 8). Default Received and
	// Auto-Submitted, as Pigeonhole.
	ProtectedHeaders []string

	// VacationMinPeriod, VacationMaxPeriod and VacationDefaultPeriod bound
	// and default :days/:seconds (defaults 1 day, 60 days, 7 days; RFC
	// 5230 section 4.1, RFC 6131 section 2).
	VacationMinPeriod     time.Duration
	VacationMaxPeriod     time.Duration
	VacationDefaultPeriod time.Duration
	// DuplicateDefaultPeriod and DuplicateMaxPeriod are for duplicate
	// without / with :seconds (defaults 12 hours and 2 days, as
	// Pigeonhole).
	DuplicateDefaultPeriod time.Duration
	DuplicateMaxPeriod     time.Duration

	// SpamTest and VirusTest configure RFC 5235; without a Header the tests
	// answer "0" (not tested).
	SpamTest  SpamTestConfig
	VirusTest VirusTestConfig
}

// SpamTestConfig says how spamtest reads the verdict of a filter that ran
// before delivery (as Pigeonhole's sieve_spamtest_* settings): the first
// Header field of the message, the status taken from it as ScoreConfig
// says, scaled to 1..10 (0..100 with :percent) by status/max, truncated
// as Pigeonhole does: 1 + floor(9 * ratio), floor(100 * ratio). A message
// without the field, or whose status does not parse, gives "0" (not
// tested, RFC 5235 section 3.1).
type SpamTestConfig struct {
	// Header is the field to read, e.g. "X-Spam-Score" or "X-Spam-Level".
	Header string
	ScoreConfig
}

// ScoreConfig is how spamtest or virustest turn a header field into a
// status and a maximum (Pigeonhole's status_type, status_header regexp,
// max_value, max_header and text_valueN).
type ScoreConfig struct {
	// Pattern extracts the status: its first submatch (or the whole match)
	// is the status; a value it does not match gives "0". Nil: the first
	// number in the value (Strlen, TextValues: the whole value, trimmed).
	Pattern *regexp.Regexp
	// Strlen makes the status the length of the value (e.g. X-Spam-Level:
	// *****).
	Strlen bool
	// TextValues, when not nil, makes the status a text (Pigeonhole's
	// status_type "text"): a status equal to a key (case-sensitive) has
	// the key's value out of 10 for spamtest (out of 5 for virustest); a
	// status that is no key gives "0". Max and MaxHeader are not used then.
	TextValues map[string]int
	// Max is the status that maps to the top of the scale (10, or 100
	// with :percent; 5 for virustest); statuses above it count as Max,
	// below 0 as 0. Default 10 for spamtest; see VirusTestConfig.
	Max float64
	// MaxHeader, if not "", is a field of the message that holds the
	// maximum instead of Max (MaxPattern's first submatch, or the first
	// number); a message without it, or a maximum that does not parse or
	// is 0, gives "0".
	MaxHeader  string
	MaxPattern *regexp.Regexp
}

// VirusTestConfig maps a virus scanner's header to the 1..5 scale of RFC
// 5235 section 3.2.
type VirusTestConfig struct {
	Header string
	// Values maps a pattern to a verdict, the first that matches wins
	// (e.g. "clean" → 1, "infected" → 5); they are tried before
	// ScoreConfig.
	Values []VirusValue
	// ScoreConfig scales the status as for spamtest, to 1 + floor(4 *
	// ratio). With none of Strlen, TextValues, Max and MaxHeader set the
	// status is the verdict itself, a number 1..5.
	ScoreConfig
}

// VirusValue is one pattern of VirusTestConfig.
type VirusValue struct {
	Pattern *regexp.Regexp
	Value   int
}

func pick[T int | int64](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

func pickDur(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}

// defaultProtectedHeaders is ProtectedHeaders' default, shared and only
// read (run.protected).
var defaultProtectedHeaders = []string{"Received", "Auto-Submitted"}

// withDefaults returns a copy of o with every zero field set.
func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	r.MaxActions = pick(r.MaxActions, DefaultMaxActions)
	r.MaxRedirects = pick(r.MaxRedirects, DefaultMaxRedirects)
	r.MaxIncludeDepth = pick(r.MaxIncludeDepth, DefaultMaxIncludeDepth)
	r.MaxVariableSize = pick(r.MaxVariableSize, DefaultMaxVariableSize)
	r.MaxVariables = pick(r.MaxVariables, DefaultMaxVariables)
	r.MaxRegexSize = pick(r.MaxRegexSize, DefaultMaxRegexSize)
	r.MaxSteps = pick(r.MaxSteps, DefaultMaxSteps)
	r.MaxBodySize = pick(r.MaxBodySize, 1<<20)
	r.MaxHeaderEdits = pick(r.MaxHeaderEdits, DefaultMaxHeaderEdits)
	if r.SubaddressDelimiters == "" {
		r.SubaddressDelimiters = "+"
	}
	if r.ProtectedHeaders == nil {
		r.ProtectedHeaders = defaultProtectedHeaders
	}
	r.VacationMinPeriod = pickDur(r.VacationMinPeriod, 24*time.Hour)
	r.VacationMaxPeriod = pickDur(r.VacationMaxPeriod, 60*24*time.Hour)
	r.VacationDefaultPeriod = pickDur(r.VacationDefaultPeriod, 7*24*time.Hour)
	r.DuplicateDefaultPeriod = pickDur(r.DuplicateDefaultPeriod, 12*time.Hour)
	r.DuplicateMaxPeriod = pickDur(r.DuplicateMaxPeriod, 48*time.Hour)
	if r.SpamTest.Max <= 0 {
		r.SpamTest.Max = 10
	}
	return r
}
