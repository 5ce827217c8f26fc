package sieve

import (
	"errors"
	"fmt"
	"strings"
)

// Pos is a position in a script: 1-based line and column (the column counts
// bytes).
type Pos struct {
	Line, Col int
}

func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.Line, p.Col) }

// Error is one compile-time problem of a script, printed as
// "file:line:column: message".
type Error struct {
	File string
	Pos  Pos
	Msg  string
}

func (e *Error) Error() string {
	f := e.File
	if f == "" {
		f = "script"
	}
	return fmt.Sprintf("%s:%d:%d: %s", f, e.Pos.Line, e.Pos.Col, e.Msg)
}

// ErrorList is the error Compile returns: every problem found, in script
// order. Its Error joins them with newlines.
type ErrorList []*Error

func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// RuntimeError is a failure while a script runs (a limit exceeded, an
// invalid address built from variables, an include that cannot be loaded).
// RFC 5228 section 2.10.6: the caller then keeps the message (implicit keep)
// and discards the script's actions. Cause is one of the Err sentinels where
// one applies.
type RuntimeError struct {
	File  string
	Pos   Pos
	Msg   string
	Cause error
}

func (e *RuntimeError) Error() string {
	f := e.File
	if f == "" {
		f = "script"
	}
	return fmt.Sprintf("%s:%d:%d: %s", f, e.Pos.Line, e.Pos.Col, e.Msg)
}

// Unwrap returns the cause.
func (e *RuntimeError) Unwrap() error { return e.Cause }

// Sentinels for the run-time limits of Options and for the conditions a
// caller branches on; a RuntimeError wraps them.
var (
	ErrTooManyActions   = errors.New("sieve: too many actions")
	ErrTooManyRedirects = errors.New("sieve: too many redirects")
	ErrIncludeDepth     = errors.New("sieve: include nesting too deep")
	ErrIncludeLoop      = errors.New("sieve: include loop")
	ErrStepBudget       = errors.New("sieve: step budget exhausted")
	ErrRegexTooLarge    = errors.New("sieve: regular expression too large")
	ErrActionConflict   = errors.New("sieve: conflicting actions")
	ErrScriptError      = errors.New("sieve: error command")
	ErrInvalidArgument  = errors.New("sieve: invalid argument at run time")
	// ErrNotFound is what a ScriptLoader returns for a script that does not
	// exist; include :optional then skips it (RFC 6609 section 3.2).
	ErrNotFound = errors.New("sieve: script not found")
)
