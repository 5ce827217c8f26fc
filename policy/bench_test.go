package policy

import (
	"bufio"
	"testing"

	"github.com/lmtpd/lmtpd/internal/wiretest"
)

// BenchmarkRequest measures one RCPT request and its reply over a unix
// socket, the way Postfix's smtpd asks on a kept-open connection.
func BenchmarkRequest(b *testing.B) {
	s := &Server{Handler: newFakeHandler()}
	c := wiretest.Connect(b, s, "unix")
	br := bufio.NewReader(c)
	req := []byte("request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=192.0.2.7\n" +
		"client_name=mail.example.net\nhelo_name=mail.example.net\nsender=alice@example.net\nrecipient=full@example.org\n" +
		"recipient_count=0\nqueue_id=\ninstance=3a2f.6753b1e2.8c1d3.0\nsize=12345\nsasl_method=\nsasl_username=\n" +
		"ccert_subject=\nencryption_protocol=\nencryption_keysize=0\npolicy_context=\n\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(req)))
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		for range 2 {
			if _, err := br.ReadSlice('\n'); err != nil {
				b.Fatal(err)
			}
		}
	}
}
