package directory

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// MaxAliasDepth is how many alias levels ExpandAliases follows by default.
const MaxAliasDepth = 20

// Errors of ExpandAliases. Both are permanent: the directory answered,
// and what it holds cannot be delivered (delivery answers 5.4.6 for a
// loop, 5.4.6 or 5.3.5 for depth, as it decides).
var (
	ErrAliasLoop  = errors.New("directory: alias loop")
	ErrAliasDepth = errors.New("directory: alias nesting too deep")
)

// SplitAliasTargets turns alias values as a directory returns them (one
// per row, or Postfix Admin's comma-separated alias.goto, or both) into
// addresses: split at commas, spaces trimmed, empty items and repeats
// dropped, order kept.
func SplitAliasTargets(values []string) []string {
	var out []string
	seen := make(map[string]bool)
	for _, v := range values {
		for item := range strings.SplitSeq(v, ",") {
			item = strings.TrimSpace(item)
			if item == "" || seen[item] {
				continue
			}
			seen[item] = true
			out = append(out, item)
		}
	}
	return out
}

// IsSelfAlias reports whether target names the alias's own address,
// which Postfix Admin writes for every mailbox (alice@d → alice@d): it
// means the mailbox itself, not a loop. Domains compare without regard
// to case, as do local parts (keys are lower-cased before lookup unless
// the domain is case-sensitive, and the rows Postfix Admin writes match
// the mailbox's own spelling).
func IsSelfAlias(alias, target string) bool {
	return strings.EqualFold(strings.TrimSpace(target), alias)
}

// ExpandOptions configures ExpandAliases.
type ExpandOptions struct {
	// Route says which directory serves address and with which key to
	// look it up. ok false means no served domain: the address is a
	// final recipient for the caller to handle (refuse, or relay).
	Route func(address string) (d Directory, k Key, ok bool)
	// MaxDepth bounds the nesting; 0 means MaxAliasDepth.
	MaxDepth int
}

// ExpandAliases resolves address through the aliases of the directories
// Route names, recursively, and returns the final recipients in order,
// each once. An address that is not an alias (ErrNotFound) is final; so
// is an alias's target equal to the alias itself (IsSelfAlias), along
// with its other targets. Whether a final address is a user is the
// caller's question (LookupUser).
//
// A target that leads back to an address on its own chain is
// ErrAliasLoop; a chain longer than MaxDepth is ErrAliasDepth; both name
// the chain. Any other lookup error is returned as it is: the answer is
// not known now. Each distinct address is looked up once per call.
func ExpandAliases(ctx context.Context, address string, o ExpandOptions) ([]string, error) {
	depth := o.MaxDepth
	if depth <= 0 {
		depth = MaxAliasDepth
	}
	x := expander{ctx: ctx, o: o, max: depth, done: make(map[string]memo), onPath: make(map[string]bool)}
	final, _, err := x.expand(address, []string{address})
	if err != nil {
		return nil, err
	}
	return dedupe(final), nil
}

type expander struct {
	ctx    context.Context
	o      ExpandOptions
	max    int
	done   map[string]memo
	onPath map[string]bool
}

// memo is an expanded address: its final recipients and how many alias
// levels lie below it, so reaching it again deeper still counts them.
type memo struct {
	final  []string
	height int
}

// expand resolves addr, reached through path (path ends with addr).
func (x *expander) expand(addr string, path []string) ([]string, int, error) {
	d, k, ok := x.o.Route(addr)
	if !ok {
		return []string{addr}, 0, nil
	}
	id := strings.ToLower(k.Address)
	if m, ok := x.done[id]; ok {
		if len(path)-1+m.height > x.max {
			return nil, 0, fmt.Errorf("%w (more than %d levels): %s → …", ErrAliasDepth, x.max, strings.Join(path, " → "))
		}
		return m.final, m.height, nil
	}
	targets, err := d.LookupAlias(x.ctx, k)
	if err == nil && len(targets) == 0 {
		err = ErrNotFound // an alias row with an empty value aliases nothing
	}
	if errors.Is(err, ErrNotFound) {
		x.done[id] = memo{final: []string{addr}}
		return []string{addr}, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	x.onPath[id] = true
	defer delete(x.onPath, id)
	var out []string
	height := 0
	for _, t := range targets {
		if IsSelfAlias(k.Address, t) {
			out = append(out, addr)
			continue
		}
		chain := append(path[:len(path):len(path)], t)
		if x.onPath[strings.ToLower(keyAddress(x, t))] {
			return nil, 0, fmt.Errorf("%w: %s", ErrAliasLoop, strings.Join(chain, " → "))
		}
		if len(chain)-1 > x.max {
			return nil, 0, fmt.Errorf("%w (more than %d levels): %s", ErrAliasDepth, x.max, strings.Join(chain, " → "))
		}
		r, h, err := x.expand(t, chain)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, r...)
		height = max(height, h+1)
	}
	out = dedupe(out)
	x.done[id] = memo{final: out, height: height}
	return out, height, nil
}

// keyAddress is the address Route would look t up with, for loop
// detection under the same normalisation as the lookups.
func keyAddress(x *expander, t string) string {
	if _, k, ok := x.o.Route(t); ok {
		return k.Address
	}
	return t
}

func dedupe(in []string) []string {
	seen := make(map[string]bool, len(in))
	out := in[:0:0]
	for _, a := range in {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}
