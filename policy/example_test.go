package policy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/lmtpd/lmtpd/policy"
)

// A quota policy: refuse recipients over quota at RCPT, say nothing
// otherwise. In main.cf:
//
//	smtpd_recipient_restrictions = ..., check_policy_service unix:private/lmtpd-quota
func Example() {
	overQuota := map[string]bool{"full@example.org": true}
	srv := &policy.Server{Handler: policy.HandlerFunc(func(ctx context.Context, r *policy.Request) (policy.Action, error) {
		if r.ProtocolState != "RCPT" {
			return policy.Dunno, nil
		}
		if overQuota[strings.ToLower(r.Recipient)] {
			return policy.MailboxFull(false), nil
		}
		return policy.Dunno, nil
	})}
	defer srv.Close()

	// A real server calls srv.Serve(listener); here one end of a pipe
	// plays Postfix.
	server, postfix := net.Pipe()
	defer postfix.Close()
	srv.ServeConn(server)
	br := bufio.NewReader(postfix)
	for _, rcpt := range []string{"bob@example.org", "full@example.org"} {
		go io.WriteString(postfix, "request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient="+rcpt+"\nsize=1024\n\n")
		reply, _ := br.ReadString('\n')
		br.ReadString('\n') // the empty line
		fmt.Print(rcpt, ": ", reply)
	}
	// Output:
	// bob@example.org: action=DUNNO
	// full@example.org: action=552 5.2.2 Mailbox full
}
