//go:build linux

package peers

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// testUsers are the maildir users of both test domains; "jörg" exercises
// RFC 6531 local parts.
var testUsers = []string{"sender", "alice", "bob", "carol", "jörg"}

// pipeRoutes are the users of both test domains whose mail goes to a pipe
// command: "defer" exits 75 (EX_TEMPFAIL) and "fail" exits 1.
const pipeRoutes = `
[[domain.user]]
name = "defer"
[domain.user.route.pipe]
argv = ["/bin/sh", "-c", "exit 75"]

[[domain.user]]
name = "fail"
[domain.user.route.pipe]
argv = ["/bin/false"]
`

// testDomains returns [[domain]] tables for example.test and
// tcp.example.test with testUsers in maildirs, the pipeRoutes users, and
// extra lines appended to each domain (more [[domain.user]] tables).
func testDomains(extra string) string {
	var b strings.Builder
	for _, name := range []string{"example.test", "tcp.example.test"} {
		fmt.Fprintf(&b, "[[domain]]\nname = %q\nusers = [", name)
		for i, u := range testUsers {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q", u)
		}
		b.WriteString("]\n")
		b.WriteString(pipeRoutes)
		b.WriteString(extra)
		b.WriteString("\n")
	}
	return b.String()
}

// authUser runs `lmtpd hash-password -user NAME` the way an administrator
// would and returns the [[auth.user]] table it prints.
func authUser(t testing.TB, name, password string) string {
	t.Helper()
	cmd := exec.Command(lmtpdBin, "hash-password", "-user", name)
	cmd.Env = append(cleanEnv(), "GOCOVERDIR="+coverDir)
	cmd.Stdin = strings.NewReader(password + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("lmtpd hash-password: %v", err)
	}
	if !strings.Contains(string(out), "password_hash = ") || !strings.Contains(string(out), "scram = ") {
		t.Fatalf("lmtpd hash-password printed %q", out)
	}
	return string(out)
}
