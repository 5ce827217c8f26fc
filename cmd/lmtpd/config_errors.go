package main

import (
	"fmt"
	"sort"
	"strings"
)

// configError is one problem in a configuration file, at a key.
type configError struct {
	File string // the file's path; "(embedded default)" for the built-in one
	Line int    // 1-based; 0 when no line can be named
	Key  string // key path such as listener[0].address; "" for the file as a whole
	Err  error
}

// Error formats the problem as file:line: key: message, the way compilers
// do, so that editors can jump to it.
func (e *configError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *configError) Unwrap() error { return e.Err }

// configErrors is every problem found in a configuration, ordered by line.
type configErrors []*configError

// Error joins the problems, one per line.
func (es configErrors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// errorCollector gathers configuration errors for one file.
type errorCollector struct {
	file string
	loc  *locator
	errs configErrors
}

// add records err at key (a path such as "listener[0].address").
func (c *errorCollector) add(key string, err error) {
	c.errs = append(c.errs, &configError{File: c.file, Line: c.loc.line(key), Key: key, Err: err})
}

// addf records a formatted error at key.
func (c *errorCollector) addf(key, format string, args ...any) {
	c.add(key, fmt.Errorf(format, args...))
}

// err returns the collected errors sorted by line, or nil.
func (c *errorCollector) err() error {
	if len(c.errs) == 0 {
		return nil
	}
	sort.SliceStable(c.errs, func(i, j int) bool { return c.errs[i].Line < c.errs[j].Line })
	return c.errs
}
