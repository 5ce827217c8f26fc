package wiretest

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Step is one step of a dialogue script.
type Step struct {
	// Kind is "C:", "C!", "S:", "S~", "CLOSED" or one of Syntax.Kinds.
	Kind string
	// Arg is the text after the kind, unquoted for C! and Syntax.Quoted.
	Arg string
	// Line is the step's line number in its file.
	Line int
}

// Script is a parsed dialogue file.
type Script struct {
	// Path is the file's path.
	Path string
	// Opts are the fields of every @opt line, in order.
	Opts []string
	// Directives holds the other @name lines Syntax allows: name (without
	// "@") to the rest of the line; a later line replaces an earlier one.
	Directives map[string]string
	// Transports are the @transports line's, else Syntax.Transports.
	Transports []string
	// Steps are the steps in file order.
	Steps []Step
}

// Syntax is what a package's dialogue files may hold beyond the common
// steps and directives.
type Syntax struct {
	// Kinds are the two-character step kinds of the package's own ("Q:",
	// "S?"); its Hooks run them.
	Kinds []string
	// Quoted are the kinds among Kinds whose argument is a Go-quoted
	// string (C!'s always is).
	Quoted []string
	// Directives are the names of @ lines besides @opt and @transports.
	Directives []string
	// Transports are the transports of a file without @transports.
	Transports []string
}

// Parse reads a dialogue file; a line it cannot parse fails the test.
func Parse(t testing.TB, path string, syn Syntax) *Script {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	known := append([]string{"C:", "C!", "S:", "S~"}, syn.Kinds...)
	quoted := append([]string{"C!"}, syn.Quoted...)
	s := &Script{Path: path, Directives: map[string]string{}, Transports: syn.Transports}
	for i, l := range strings.Split(string(data), "\n") {
		l = strings.TrimRight(l, "\r")
		n := i + 1
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "@"):
			name, rest, _ := strings.Cut(l[1:], " ")
			switch {
			case name == "opt":
				s.Opts = append(s.Opts, strings.Fields(rest)...)
			case name == "transports":
				s.Transports = strings.Split(strings.TrimSpace(rest), ",")
			case slices.Contains(syn.Directives, name):
				s.Directives[name] = rest
			default:
				t.Fatalf("%s:%d: unknown directive %q", path, n, l)
			}
		case l == "CLOSED" || slices.Contains(known, l):
			s.Steps = append(s.Steps, Step{l, "", n})
		case len(l) >= 3 && (l[2] == ' ' || l[2] == '\t'):
			kind, arg := l[:2], l[3:]
			if !slices.Contains(known, kind) {
				t.Fatalf("%s:%d: unknown step %q", path, n, l)
			}
			if slices.Contains(quoted, kind) {
				u, err := strconv.Unquote(arg)
				if err != nil {
					t.Fatalf("%s:%d: %v", path, n, err)
				}
				arg = u
			}
			s.Steps = append(s.Steps, Step{kind, arg, n})
		default:
			t.Fatalf("%s:%d: cannot parse %q", path, n, l)
		}
	}
	return s
}

// RunFiles parses every file matching pattern (there must be one) and
// calls play for each of its transports in a parallel subtest named
// after the file (without ".txt") and the transport.
func RunFiles(t *testing.T, pattern string, syn Syntax, play func(t *testing.T, s *Script, transport string)) {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no dialogues match %s: %v", pattern, err)
	}
	for _, f := range files {
		s := Parse(t, f, syn)
		for _, tr := range s.Transports {
			t.Run(strings.TrimSuffix(filepath.Base(f), ".txt")+"/"+tr, func(t *testing.T) {
				t.Parallel()
				play(t, s, tr)
			})
		}
	}
}
