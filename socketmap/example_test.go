package socketmap_test

import (
	"bufio"
	"context"
	"fmt"
	"net"

	"github.com/lmtpd/lmtpd/socketmap"
)

// A mailbox map for Postfix. In main.cf:
//
//	virtual_mailbox_maps = socketmap:unix:/run/lmtpd/map.sock:mailbox
func Example() {
	mailboxes := map[string]string{"bob@example.org": "example.org/bob/"}
	srv := &socketmap.Server{Handler: socketmap.HandlerFunc(func(ctx context.Context, name, key string) (string, error) {
		if name != "mailbox" {
			return "", socketmap.Permanent("unknown map "+name, nil)
		}
		if v, ok := mailboxes[key]; ok {
			return v, nil
		}
		return "", socketmap.ErrNotFound
	})}
	defer srv.Close()

	// A real server calls srv.Serve(listener); here one end of a pipe
	// plays Postfix.
	server, postfix := net.Pipe()
	defer postfix.Close()
	srv.ServeConn(server)
	br := bufio.NewReader(postfix)
	for _, req := range []string{"mailbox bob@example.org", "mailbox eve@example.org", "alias bob@example.org"} {
		go postfix.Write(socketmap.AppendNetstring(nil, []byte(req)))
		reply, _ := socketmap.ReadNetstring(br, 100000)
		fmt.Printf("%q\n", reply)
	}
	// Output:
	// "OK example.org/bob/"
	// "NOTFOUND "
	// "PERM unknown map alias"
}
