package delivery

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lmtpd/lmtpd/protocol"
)

// TestDetailFolders: +detail reaches an existing folder; a missing one is
// created only for a user whose configuration allows it; special folders
// (Trash, Sent, ... and INBOX) are never delivered into, existing or not:
// such mail goes to INBOX.
func TestDetailFolders(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		name       string
		global     bool     // MaildirConfig.CreateFolders
		user       *bool    // User.CreateFolders of bob
		special    []string // MaildirConfig.SpecialFolders
		existing   []string // folders made before delivery
		rcpt       string
		wantFolder string // "" for INBOX
		wantNoDir  string // a folder that must not have been created
	}{
		{name: "existing folder", existing: []string{".lists"}, rcpt: "bob+lists", wantFolder: ".lists"},
		{name: "missing folder, creation off", rcpt: "bob+lists", wantNoDir: ".lists"},
		{name: "missing folder, user may create", user: &yes, rcpt: "bob+lists", wantFolder: ".lists"},
		{name: "missing folder, global on, user off", global: true, user: &no, rcpt: "bob+lists", wantNoDir: ".lists"},
		{name: "missing folder, global on", global: true, rcpt: "bob+lists", wantFolder: ".lists"},
		{name: "any-user, global off", rcpt: "anyone+lists@example.net", wantNoDir: ".lists"},
		{name: "existing Trash", existing: []string{".Trash"}, rcpt: "bob+Trash"},
		{name: "existing Trash, other case", existing: []string{".Trash"}, rcpt: "bob+tRaSh"},
		{name: "under Trash", existing: []string{".Trash.old"}, rcpt: "bob+Trash.old"},
		{name: "Sent is not created", user: &yes, rcpt: "bob+Sent", wantNoDir: ".Sent"},
		{name: "Drafts", existing: []string{".Drafts"}, rcpt: "bob+Drafts"},
		{name: "Junk by default", existing: []string{".Junk"}, rcpt: "bob+Junk"},
		{name: "INBOX", user: &yes, rcpt: "bob+INBOX", wantNoDir: ".INBOX"},
		{name: "Junk when configured as ordinary", special: []string{"Trash", "Sent", "Drafts"}, existing: []string{".Junk"}, rcpt: "bob+Junk", wantFolder: ".Junk"},
		{name: "Trash still special with a custom list", special: []string{"Trash"}, existing: []string{".Trash"}, rcpt: "bob+Trash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			cfg := DefaultConfig()
			cfg.Maildir.Root = root
			cfg.Maildir.DetailFolders = true
			cfg.Maildir.CreateFolders = tt.global
			cfg.Maildir.SpecialFolders = tt.special
			cfg.Domains = []Domain{
				{Name: "example.org", Users: []User{{Name: "bob", CreateFolders: tt.user}}},
				{Name: "example.net", AnyUser: true},
			}
			rcpt := tt.rcpt
			if !strings.Contains(rcpt, "@") {
				rcpt += "@example.org"
			}
			a := addr(rcpt)
			mbox := filepath.Join(a.Domain, "bob")
			if a.Domain == "example.net" {
				mbox = filepath.Join(a.Domain, "anyone")
			}
			for _, f := range tt.existing {
				for _, sub := range []string{"cur", "new", "tmp"} {
					if err := os.MkdirAll(filepath.Join(root, mbox, f, sub), 0o700); err != nil {
						t.Fatal(err)
					}
				}
			}
			r := newRouter(t, cfg, Options{})
			st, rcptErrs, err := run(t, testCtx(t, nil), r, protocol.LMTP, "s@example.test", []string{rcpt}, testText)
			if err != nil || rcptErrs[0] != nil {
				t.Fatal(err, rcptErrs[0])
			}
			if e, _ := st.get(0); e != nil {
				t.Fatal(e)
			}
			if n := len(maildirFiles(t, root, filepath.Join(mbox, tt.wantFolder))); n != 1 {
				t.Errorf("folder %q has %d messages, want 1", tt.wantFolder, n)
			}
			for _, f := range tt.existing {
				if f != tt.wantFolder {
					if n := len(maildirFiles(t, root, filepath.Join(mbox, f))); n != 0 {
						t.Errorf("folder %s got %d messages", f, n)
					}
				}
			}
			if tt.wantNoDir != "" {
				if _, err := os.Stat(filepath.Join(root, mbox, tt.wantNoDir)); err == nil {
					t.Errorf("folder %s was created", tt.wantNoDir)
				}
			}
		})
	}
}

func TestSpecialFoldersValidate(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Maildir.SpecialFolders = []string{"Trash", "a.b", ""}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("bad special folder names accepted")
	}
	for _, want := range []string{`special folder "a.b"`, `special folder ""`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
