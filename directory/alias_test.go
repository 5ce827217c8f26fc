package directory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestSplitAliasTargets(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"rows", []string{"a@d", "b@d"}, []string{"a@d", "b@d"}},
		{"postfix admin goto", []string{"a@d,b@d, c@e ,"}, []string{"a@d", "b@d", "c@e"}},
		{"mixed and repeated", []string{" a@d ", "b@d,a@d", ""}, []string{"a@d", "b@d"}},
		{"nothing", []string{" , ,"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := SplitAliasTargets(tc.in); !slices.Equal(got, tc.want) {
				t.Errorf("SplitAliasTargets(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestIsSelfAlias(t *testing.T) {
	tests := []struct {
		alias, target string
		want          bool
	}{
		{"alice@example.org", "alice@example.org", true},
		{"alice@example.org", " Alice@Example.ORG ", true},
		{"alice@example.org", "alice@example.net", false},
		{"alice@example.org", "alice", false},
		{"alice@example.org", "bob@example.org", false},
	}
	for _, tc := range tests {
		if got := IsSelfAlias(tc.alias, tc.target); got != tc.want {
			t.Errorf("IsSelfAlias(%q, %q) = %v, want %v", tc.alias, tc.target, got, tc.want)
		}
	}
}

// routeTo serves each domain from the given directory; other domains
// are not served.
func routeTo(dirs map[string]Directory) func(string) (Directory, Key, bool) {
	return func(a string) (Directory, Key, bool) {
		k := KeyFor(strings.ToLower(a))
		d, ok := dirs[k.Domain]
		return d, k, ok
	}
}

func TestExpandAliases(t *testing.T) {
	pg := newFake("pg")
	other := newFake("other")
	pg.aliases = map[string][]string{
		"alice@d":     {"alice@d"},                   // Postfix Admin's self-alias
		"sales@d":     {"alice@d", "bob@d"},          // two rows
		"team@d":      {"sales@d", "carol@e", "x@d"}, // to another directory and an unknown
		"both@d":      {"bob@d", "alice@d", "both@d"},
		"ext@d":       {"someone@elsewhere.net"},
		"loop1@d":     {"loop2@d"},
		"loop2@d":     {"Loop1@D"},
		"selfloop@d":  {"a@d", "selfloop2@d"},
		"selfloop2@d": {"selfloop@d"},
		"diamond@d":   {"l@d", "r@d"},
		"l@d":         {"bottom@d"},
		"r@d":         {"bottom@d"},
		"empty@d":     {},
	}
	other.aliases = map[string][]string{"carol@e": {"carol@e", "dave@d"}}
	o := ExpandOptions{Route: routeTo(map[string]Directory{"d": pg, "e": other})}
	tests := []struct {
		addr string
		want []string
		err  error
	}{
		{"nobody@d", []string{"nobody@d"}, nil},
		{"alice@d", []string{"alice@d"}, nil},
		{"sales@d", []string{"alice@d", "bob@d"}, nil},
		{"team@d", []string{"alice@d", "bob@d", "carol@e", "dave@d", "x@d"}, nil},
		{"both@d", []string{"bob@d", "alice@d", "both@d"}, nil},
		{"ext@d", []string{"someone@elsewhere.net"}, nil},
		{"loop1@d", nil, ErrAliasLoop},
		{"selfloop@d", nil, ErrAliasLoop},
		{"diamond@d", []string{"bottom@d"}, nil},
		{"empty@d", []string{"empty@d"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			got, err := ExpandAliases(context.Background(), tc.addr, o)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("ExpandAliases(%s) error = %v, want %v", tc.addr, err, tc.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("ExpandAliases(%s) = %q, %v; want %q", tc.addr, got, err, tc.want)
			}
		})
	}
	_, err := ExpandAliases(context.Background(), "loop1@d", o)
	if err == nil || !strings.Contains(err.Error(), "loop1@d → loop2@d → Loop1@D") {
		t.Errorf("loop error %q should show the chain", err)
	}
}

func TestExpandAliasesDepth(t *testing.T) {
	chain := func(n int) *fakeDir {
		f := newFake("pg")
		for i := range n {
			f.aliases[fmt.Sprintf("a%d@d", i)] = []string{fmt.Sprintf("a%d@d", i+1)}
		}
		return f
	}
	// 20 levels: a0 → … → a20 is fine.
	f := chain(20)
	got, err := ExpandAliases(context.Background(), "a0@d", ExpandOptions{Route: routeTo(map[string]Directory{"d": f})})
	if err != nil || !slices.Equal(got, []string{"a20@d"}) {
		t.Fatalf("20 levels: %q, %v", got, err)
	}
	// 21 levels is an error.
	f = chain(21)
	_, err = ExpandAliases(context.Background(), "a0@d", ExpandOptions{Route: routeTo(map[string]Directory{"d": f})})
	if !errors.Is(err, ErrAliasDepth) || !strings.Contains(err.Error(), "more than 20 levels") {
		t.Fatalf("21 levels: %v, want ErrAliasDepth", err)
	}
	// A subtree already expanded still counts when reached deeper: top
	// reaches a0 directly (21 levels below it: too deep) after first
	// reaching a10 (11 levels: fine) through a shorter path.
	f = chain(21)
	f.aliases["top@d"] = []string{"a10@d", "x@d"}
	f.aliases["x@d"] = []string{"a0@d"}
	f.aliases["a20@d"] = nil
	delete(f.aliases, "a20@d")
	_, err = ExpandAliases(context.Background(), "top@d", ExpandOptions{Route: routeTo(map[string]Directory{"d": f}), MaxDepth: 15})
	if !errors.Is(err, ErrAliasDepth) {
		t.Fatalf("memoised subtree reached deeper: %v, want ErrAliasDepth", err)
	}
	// A custom bound.
	f = chain(3)
	_, err = ExpandAliases(context.Background(), "a0@d", ExpandOptions{Route: routeTo(map[string]Directory{"d": f}), MaxDepth: 2})
	if !errors.Is(err, ErrAliasDepth) {
		t.Fatalf("MaxDepth 2, 3 levels: %v", err)
	}
}

func TestExpandAliasesErrors(t *testing.T) {
	f := newFake("pg")
	f.aliases["a@d"] = []string{"b@d"}
	o := ExpandOptions{Route: routeTo(map[string]Directory{"d": f})}
	f.setErr(errDown)
	_, err := ExpandAliases(context.Background(), "a@d", o)
	if !errors.Is(err, errDown) || errors.Is(err, ErrNotFound) {
		t.Fatalf("directory down: %v, want the cause", err)
	}
	// Through a Cache, one lookup per distinct address.
	f.setErr(nil)
	f.aliases = map[string][]string{"a@d": {"b@d", "c@d"}, "b@d": {"c@d"}}
	f.calls.Store(0)
	c := NewCache(f, CacheOptions{})
	got, err := ExpandAliases(context.Background(), "a@d", ExpandOptions{Route: routeTo(map[string]Directory{"d": c})})
	if err != nil || !slices.Equal(got, []string{"c@d"}) {
		t.Fatalf("got %q, %v", got, err)
	}
	if n := f.calls.Load(); n != 3 {
		t.Errorf("lookups = %d, want 3 (a, b, c once each)", n)
	}
}
