package maildir

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFlagsAndKeywords: flags put the message into cur/ with the info
// letters in order; keywords get letters from dovecot-keywords, existing
// entries reused case-insensitively, new ones added at the first free
// index, none past z; a message without flags stays in new/.
func TestFlagsAndKeywords(t *testing.T) {
	root := t.TempDir()
	s := newStore(t, Options{Root: root, Hostname: "h"})
	ctx := context.Background()
	dir := filepath.Join(root, "u")
	os.MkdirAll(dir, 0o700)
	os.WriteFile(filepath.Join(dir, KeywordsFile), []byte("0 $Junk\n2 Work\nbad line\n"), 0o600)

	st, err := s.Deliver(ctx, Mailbox{Path: "u", Flags: []string{`\Seen`, "work", `\Draft`, "$New", `\Recent`, "bad(kw"}}, testContent)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(st.Path(), "u/cur/") || !strings.HasSuffix(st.Path(), ":2,DSbc") {
		t.Errorf("path %s, want u/cur/...:2,DSbc", st.Path())
	}
	if _, err := os.Stat(filepath.Join(root, st.Path())); err != nil {
		t.Error(err)
	}
	kw, _ := os.ReadFile(filepath.Join(dir, KeywordsFile))
	if string(kw) != "0 $Junk\n1 $New\n2 Work\n" {
		t.Errorf("dovecot-keywords %q", kw)
	}
	st, err = s.Deliver(ctx, Mailbox{Path: "u"}, testContent)
	if err != nil || !strings.HasPrefix(st.Path(), "u/new/") || strings.Contains(st.Path(), ":2,") {
		t.Errorf("no flags: %s, %v", st.Path(), err)
	}
	var many []string
	for i := range 30 {
		many = append(many, fmt.Sprintf("k%d", i))
	}
	st, err = s.Deliver(ctx, Mailbox{Path: "u", Flags: many}, testContent)
	if err != nil {
		t.Fatal(err)
	}
	_, info, _ := strings.Cut(st.Path(), ":2,")
	if len(info) != 23 || info[len(info)-1] != 'z' { // 26 letters, 3 taken before
		t.Errorf("info %q, want the 23 free letters up to z", info)
	}
}
