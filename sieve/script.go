package sieve

import (
	"fmt"
	"sort"
)

// Defaults of CompileOptions and Options.
const (
	DefaultMaxScriptSize   = 1 << 20
	DefaultMaxRegexSize    = 4096
	DefaultMaxActions      = 32
	DefaultMaxRedirects    = 4
	DefaultMaxIncludeDepth = 10
	DefaultMaxVariableSize = 4096
	DefaultMaxVariables    = 256
	DefaultMaxSteps        = 100000
	DefaultMaxHeaderEdits  = 64
	defaultMaxErrors       = 20
)

// CompileOptions bound what Compile accepts. The zero value (or nil) uses
// the defaults written beside each field.
type CompileOptions struct {
	// MaxScriptSize is the largest script in bytes (default 1 MiB).
	MaxScriptSize int
	// MaxRegexSize is the longest regular expression in bytes (default
	// 4096); RE2 keeps matching linear in the input whatever the pattern.
	MaxRegexSize int
	// MaxErrors is how many errors Compile reports before it stops
	// (default 20).
	MaxErrors int
}

func (o *CompileOptions) maxRegex() int {
	if o == nil || o.MaxRegexSize <= 0 {
		return DefaultMaxRegexSize
	}
	return o.MaxRegexSize
}

func (o *CompileOptions) maxSize() int {
	if o == nil || o.MaxScriptSize <= 0 {
		return DefaultMaxScriptSize
	}
	return o.MaxScriptSize
}

func (o *CompileOptions) maxErrors() int {
	if o == nil || o.MaxErrors <= 0 {
		return defaultMaxErrors
	}
	return o.MaxErrors
}

// Script is a compiled, checked script. It is immutable and safe for
// concurrent use by any number of Execute calls, so a caller may cache it
// (by path and modification time, for example).
type Script struct {
	name string
	cmds []*node
	exts map[string]bool
}

// Name returns the name the script was compiled with (used in errors).
func (s *Script) Name() string { return s.name }

// Requires returns the extensions the script requires at its top, sorted.
func (s *Script) Requires() []string {
	out := make([]string, 0, len(s.exts))
	for e := range s.exts {
		out = append(out, e)
	}
	sortStrings(out)
	return out
}

// Compile parses and checks a script. name is used in error positions
// ("name:line:column: message"), typically the file's path. On failure the
// error is an ErrorList.
func Compile(name string, src []byte, opts *CompileOptions) (*Script, error) {
	if len(src) > opts.maxSize() {
		return nil, ErrorList{{File: name, Pos: Pos{1, 1}, Msg: fmt.Sprintf("script larger than %d bytes", opts.maxSize())}}
	}
	tree, perr := parse(name, string(src))
	if perr != nil {
		return nil, ErrorList{perr}
	}
	c := &checker{file: name, exts: map[string]bool{}, maxErr: opts.maxErrors(), limits: opts}
	cmds := c.checkBlock(tree, true)
	if len(c.errs) > 0 {
		return nil, c.errs
	}
	exts := map[string]bool{}
	for e := range c.exts {
		exts[e] = true
	}
	return &Script{name: name, cmds: cmds, exts: exts}, nil
}

func sortStrings(s []string) { sort.Strings(s) }

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
