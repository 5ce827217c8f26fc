package delivery

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/lmtpd/lmtpd/delivery/maildir"
	"github.com/lmtpd/lmtpd/protocol"
)

// TestMaildirCommitAbortsFailed: a copy staged by the maildir target whose
// Result was set to a failure after Stage (by a later step of the
// transaction) is not committed, and not left behind either: Commit
// aborts it, so its file leaves tmp/ (it is not held open until the
// 36-hour cleanup) and the other copies are delivered.
func TestMaildirCommitAbortsFailed(t *testing.T) {
	root := t.TempDir()
	st, err := maildir.New(maildir.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	c := maildir.Content{Header: []byte("Subject: x\n\nhello\n")}
	var staged []*maildir.Staged
	for _, u := range []string{"a", "b"} {
		s, err := st.Stage(ctx, maildir.Mailbox{Path: u}, c)
		if err != nil {
			t.Fatal(err)
		}
		staged = append(staged, s)
	}
	s := &maildirStaged{t: &maildirTarget{root: root, st: st}, staged: staged}
	res := []Result{{}, {Err: &protocol.Error{Code: 451, EnhancedCode: protocol.ECTempSystem, Message: "later step failed"}}}
	s.Commit(ctx, res)
	if res[0].Err != nil {
		t.Errorf("a: %v", res[0].Err)
	}
	checkCode(t, res[1].Err, 451, protocol.ECTempSystem)
	count := func(rel string) int {
		t.Helper()
		ents, err := os.ReadDir(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	if n := count("a/new"); n != 1 {
		t.Errorf("a/new has %d files, want 1", n)
	}
	if n := count("b/new") + count("b/tmp"); n != 0 {
		t.Errorf("b has %d files in new/ and tmp/, want none (aborted)", n)
	}
}
