package socketmap

import (
	"bufio"
	"testing"

	"github.com/lmtpd/lmtpd/internal/wiretest"
)

// BenchmarkLookup measures one lookup and its reply over a unix socket on
// a kept-open connection, as Postfix's dict_sockmap asks.
func BenchmarkLookup(b *testing.B) {
	s := &Server{Handler: newFakeHandler()}
	c := wiretest.Connect(b, s, "unix")
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
