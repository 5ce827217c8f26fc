package socketmap

import (
	"bufio"
	"net"
	"path/filepath"
	"testing"
)

// BenchmarkLookup measures one lookup and its reply over a unix socket on
// a kept-open connection, as Postfix's dict_sockmap asks.
func BenchmarkLookup(b *testing.B) {
	s := &Server{Handler: newFakeHandler()}
	defer s.Close()
	path := filepath.Join(b.TempDir(), "m.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	go s.Serve(l)
	c, err := net.Dial("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	req := AppendNetstring(nil, []byte("mailbox bob@example.org"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := ReadNetstring(br, -1); err != nil {
			b.Fatal(err)
		}
	}
}
