package delivery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/lmtpd/lmtpd/directory"
	"github.com/lmtpd/lmtpd/protocol"
)

// fakeAliasLookup is a directory with users and aliases, keyed by the
// address it is asked; down makes every lookup fail; it records what it
// was asked.
type fakeAliasLookup struct {
	users   map[string]bool
	aliases map[string][]string
	down    bool
	asked   []string
}

func (f *fakeAliasLookup) LookupUser(_ context.Context, k directory.Key) (directory.Record, error) {
	f.asked = append(f.asked, "user "+k.Address)
	if f.down {
		return directory.Record{}, errors.New("connection refused")
	}
	if !f.users[k.Address] {
		return directory.Record{}, directory.ErrNotFound
	}
	return directory.Record{Mailbox: "dir/" + k.Address}, nil
}

func (f *fakeAliasLookup) LookupAlias(_ context.Context, k directory.Key) ([]string, error) {
	f.asked = append(f.asked, "alias "+k.Address)
	if f.down {
		return nil, errors.New("connection refused")
	}
	v, ok := f.aliases[k.Address]
	if !ok {
		return nil, directory.ErrNotFound
	}
	// Several rows, or one comma-separated value, as a directory gives them.
	return directory.SplitAliasTargets(v), nil
}

func TestLookupDirectoryAliases(t *testing.T) {
	users := map[string]bool{"dan@example.org": true, "erin@example.org": true, "alice@example.org": true}
	chain := map[string][]string{}
	for i := range 25 {
		chain[fmt.Sprintf("c%d@example.org", i)] = []string{fmt.Sprintf("c%d@example.org", i+1)}
	}
	tests := []struct {
		name    string
		rcpt    string
		aliases map[string][]string
		down    bool
		want    []string // Mailbox of each destination, in order
		folder  string   // Folder of the first destination
		code    int
		ec      protocol.EnhancedCode
	}{
		{name: "rows", rcpt: "list@example.org", aliases: map[string][]string{"list@example.org": {"dan@example.org", "erin@example.org"}},
			want: []string{"dir/dan@example.org", "dir/erin@example.org"}},
		{name: "comma value", rcpt: "list@example.org", aliases: map[string][]string{"list@example.org": {"dan@example.org, erin@example.org"}},
			want: []string{"dir/dan@example.org", "dir/erin@example.org"}},
		{name: "self alias is the mailbox", rcpt: "Dan@example.org", aliases: map[string][]string{"dan@example.org": {"dan@example.org"}},
			want: []string{"dir/dan@example.org"}},
		{name: "self alias with forwarding copy", rcpt: "dan@example.org", aliases: map[string][]string{"dan@example.org": {"dan@example.org,erin@example.org"}},
			want: []string{"dir/dan@example.org", "dir/erin@example.org"}},
		{name: "to configured user and other served domain", rcpt: "x@example.org", aliases: map[string][]string{"x@example.org": {"bob@example.org", "zed@example.net"}},
			want: []string{"example.org/bob", "example.net/zed"}},
		{name: "detail passes on", rcpt: "x+tag@example.org", aliases: map[string][]string{"x@example.org": {"bob@example.org"}},
			want: []string{"example.org/bob"}, folder: ".tag"},
		{name: "target's own detail kept", rcpt: "x+tag@example.org", aliases: map[string][]string{"x@example.org": {"bob+box@example.org"}},
			want: []string{"example.org/bob"}, folder: ".box"},
		{name: "chain", rcpt: "a@example.org", aliases: map[string][]string{"a@example.org": {"b@example.org"}, "b@example.org": {"c@example.org"}, "c@example.org": {"dan@example.org"}},
			want: []string{"dir/dan@example.org"}},
		{name: "loop", rcpt: "a@example.org", aliases: map[string][]string{"a@example.org": {"b@example.org"}, "b@example.org": {"a@example.org"}},
			code: 554, ec: protocol.EnhancedCode{5, 4, 6}},
		{name: "too deep", rcpt: "c0@example.org", aliases: chain, code: 554, ec: protocol.EnhancedCode{5, 4, 6}},
		{name: "not served", rcpt: "x@example.org", aliases: map[string][]string{"x@example.org": {"someone@elsewhere.test"}},
			code: 550, ec: protocol.EnhancedCode{5, 1, 2}},
		{name: "target unknown", rcpt: "x@example.org", aliases: map[string][]string{"x@example.org": {"nobody@example.org"}},
			code: 550, ec: protocol.EnhancedCode{5, 1, 1}},
		{name: "directory down", rcpt: "dan@example.org", down: true, code: 451, ec: protocol.EnhancedCode{4, 3, 0}},
		{name: "no alias: directory user", rcpt: "erin@example.org", want: []string{"dir/erin@example.org"}},
		{name: "configured user first", rcpt: "bob@example.org", aliases: map[string][]string{"bob@example.org": {"dan@example.org"}},
			want: []string{"example.org/bob"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig("/srv/mail")
			tab, err := compile(&cfg)
			if err != nil {
				t.Fatal(err)
			}
			f := &fakeAliasLookup{users: users, aliases: tt.aliases, down: tt.down}
			got, err := tab.lookup(context.Background(), addr(tt.rcpt), protocol.LMTP, f)
			t.Logf("asked: %v", f.asked)
			if tt.code != 0 {
				checkCode(t, err, tt.code, tt.ec)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var boxes []string
			for _, d := range got {
				boxes = append(boxes, d.Mailbox)
			}
			if !slices.Equal(boxes, tt.want) {
				t.Errorf("mailboxes %q, want %q", boxes, tt.want)
			}
			if len(got) > 0 && got[0].Folder != tt.folder {
				t.Errorf("folder %q, want %q", got[0].Folder, tt.folder)
			}
		})
	}
}

// TestLookupDirectoryAliasesAskedOnce: a recipient that is no alias costs
// one LookupAlias before its LookupUser, and an alias chain asks each
// address once, the first included (dirAlias looks it up before
// expanding and hands that answer to the expansion).
func TestLookupDirectoryAliasesAskedOnce(t *testing.T) {
	users := map[string]bool{"dan@example.org": true, "erin@example.org": true}
	aliases := map[string][]string{"a@example.org": {"b@example.org"}, "b@example.org": {"c@example.org, dan@example.org"}, "c@example.org": {"dan@example.org"}}
	tests := []struct {
		name, rcpt string
		asked      []string
	}{
		{"no alias", "Erin@example.org", []string{"alias erin@example.org", "user erin@example.org"}},
		{"no alias, with detail", "erin+news@example.org", []string{"alias erin@example.org", "user erin@example.org"}},
		{"chain", "a@example.org", []string{"alias a@example.org", "alias b@example.org", "alias c@example.org", "alias dan@example.org", "user dan@example.org"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig("/srv/mail")
			tab, err := compile(&cfg)
			if err != nil {
				t.Fatal(err)
			}
			f := &fakeAliasLookup{users: users, aliases: aliases}
			if _, err := tab.lookup(context.Background(), addr(tt.rcpt), protocol.LMTP, f); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(f.asked, tt.asked) {
				t.Errorf("asked %q, want %q", f.asked, tt.asked)
			}
		})
	}
}

// nobodyLookup knows no user; with aliases, no alias either.
type nobodyLookup struct{}

func (nobodyLookup) LookupUser(context.Context, directory.Key) (directory.Record, error) {
	return directory.Record{}, directory.ErrNotFound
}

type nobodyAliasLookup struct{ nobodyLookup }

func (nobodyAliasLookup) LookupAlias(context.Context, directory.Key) ([]string, error) {
	return nil, directory.ErrNotFound
}

// TestLookupNoAliasAllocations: a directory that can hold aliases costs
// a recipient that is none no allocation beyond those of a directory
// without aliases (this is every RCPT of a domain without a directory,
// as the daemon asks its [[domain]] directories through one AliasLookup).
func TestLookupNoAliasAllocations(t *testing.T) {
	cfg := testConfig("/srv/mail")
	tab, err := compile(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := addr("someone+tag@example.net") // an any-user domain
	allocs := func(l Lookup) float64 {
		return testing.AllocsPerRun(100, func() {
			if _, err := tab.lookup(context.Background(), a, protocol.LMTP, l); err != nil {
				t.Fatal(err)
			}
		})
	}
	plain, withAliases := allocs(nobodyLookup{}), allocs(nobodyAliasLookup{})
	if withAliases > plain {
		t.Errorf("%v allocations per lookup with an AliasLookup that knows no alias, %v without aliases", withAliases, plain)
	}
}
