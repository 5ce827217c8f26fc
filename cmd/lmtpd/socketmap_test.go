package main

import (
	"bufio"
	"context"
	"errors"
	"net"
	"testing"

	"github.com/lmtpd/lmtpd/delivery"
	"github.com/lmtpd/lmtpd/directory"
	"github.com/lmtpd/lmtpd/socketmap"
)

type lookupFunc func(ctx context.Context, k directory.Key) (directory.Record, error)

func (f lookupFunc) LookupUser(ctx context.Context, k directory.Key) (directory.Record, error) {
	return f(ctx, k)
}

// TestSocketmapTables: the three tables over a real socketmap.Server,
// answered from a Router's routing: TOML users, aliases, a catch-all, a
// directory (one user found, one with a forward, one lookup failing), a
// pipe and a remote route.
func TestSocketmapTables(t *testing.T) {
	cfg := delivery.DefaultConfig()
	cfg.Maildir.Root = t.TempDir()
	cfg.Domains = []delivery.Domain{
		{
			Name: "example.org",
			Users: []delivery.User{
				{Name: "bob"},
				{Name: "carol", Route: delivery.Route{LMTP: &delivery.LMTP{Address: "10.0.0.5:24"}}},
			},
			Aliases: map[string][]string{"sales": {"bob", "carol"}, "info": {"bob"}},
		},
		{Name: "example.net", Users: []delivery.User{{Name: "ann"}}, CatchAll: []string{"ann"}},
	}
	lookup := lookupFunc(func(ctx context.Context, k directory.Key) (directory.Record, error) {
		switch k.LocalPart {
		case "dir":
			return directory.Record{Mailbox: "shard1/dir"}, nil
		case "far":
			return directory.Record{Forward: "unix:/run/b.sock"}, nil
		case "down":
			return directory.Record{}, errors.New("connection refused")
		}
		return directory.Record{}, directory.ErrNotFound
	})
	plan, err := delivery.Compile(cfg, delivery.PlanOptions{Lookup: lookup})
	if err != nil {
		t.Fatal(err)
	}
	r, err := delivery.New(plan, delivery.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	srv := &socketmap.Server{Handler: &socketmapHandler{r: r}}
	defer srv.Close()
	server, client := net.Pipe()
	defer client.Close()
	srv.ServeConn(server)
	br := bufio.NewReader(client)

	tests := []struct{ req, want string }{
		{"domain example.org", "OK "},
		{"domain EXAMPLE.NET", "OK "},
		{"domain example.com", "NOTFOUND "},
		{"mailbox bob@example.org", "OK example.org/bob/"},
		{"mailbox Bob@Example.org", "OK example.org/bob/"},
		{"mailbox bob+lists@example.org", "OK example.org/bob/"},
		{"mailbox dir@example.org", "OK shard1/dir/"},
		{"mailbox carol@example.org", "OK carol@example.org"},
		{"mailbox far@example.org", "OK far@example.org"},
		{"mailbox nobody@example.org", "NOTFOUND "},
		{"mailbox sales@example.org", "NOTFOUND "},
		{"mailbox bob@example.com", "NOTFOUND "},
		{"mailbox down@example.org", "TEMP lookup failed, try again later"},
		{"mailbox not an address", "NOTFOUND "},
		{"alias sales@example.org", "OK bob@example.org,carol@example.org"},
		{"alias info@example.org", "OK bob@example.org"},
		{"alias someone@example.net", "OK ann@example.net"},
		{"alias bob@example.org", "NOTFOUND "},
		{"alias nobody@example.org", "NOTFOUND "},
		{"alias @example.org", "NOTFOUND "},
		{"alias bob", "NOTFOUND "},
		{"alias down@example.org", "TEMP lookup failed, try again later"},
		{"users bob@example.org", "PERM bad request"},
	}
	for _, tc := range tests {
		go client.Write(socketmap.AppendNetstring(nil, []byte(tc.req)))
		got, err := socketmap.ReadNetstring(br, 100000)
		if err != nil {
			t.Fatalf("%q: %v", tc.req, err)
		}
		if string(got) != tc.want {
			t.Errorf("%q: got %q, want %q", tc.req, got, tc.want)
		}
	}
}

// FuzzSocketmapLookup: any table name and key get an answer of the
// socketmap contract (a value, ErrNotFound, ErrBadRequest or a
// *socketmap.Error), never a panic.
func FuzzSocketmapLookup(f *testing.F) {
	cfg := delivery.DefaultConfig()
	cfg.Maildir.Root = f.TempDir()
	cfg.Domains = []delivery.Domain{
		{Name: "example.org", Users: []delivery.User{{Name: "bob"}}, Aliases: map[string][]string{"sales": {"bob"}}},
		{Name: "any.example", AnyUser: true, UTF8LocalParts: true},
	}
	plan, err := delivery.Compile(cfg, delivery.PlanOptions{})
	if err != nil {
		f.Fatal(err)
	}
	r, err := delivery.New(plan, delivery.Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer r.Close()
	h := &socketmapHandler{r: r}
	for _, s := range [][2]string{{"mailbox", "bob@example.org"}, {"alias", "sales@example.org"}, {"domain", "any.example"},
		{"mailbox", "\"q u\"@any.example"}, {"mailbox", "jörg@any.example"}, {"alias", "@example.org"}, {"mailbox", "x@[192.0.2.1]"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, table, key string) {
		v, err := h.Lookup(context.Background(), table, key)
		var se *socketmap.Error
		switch {
		case err == nil:
			if table == socketmapMailbox && v == "" {
				t.Errorf("mailbox %q: OK with an empty value", key)
			}
		case errors.Is(err, socketmap.ErrNotFound), errors.Is(err, socketmap.ErrBadRequest), errors.As(err, &se):
		default:
			t.Errorf("%s %q: error %v outside the contract", table, key, err)
		}
	})
}
