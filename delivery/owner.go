package delivery

import (
	"errors"
	"fmt"
	"io/fs"
	osuser "os/user"
	"path/filepath"
	"strconv"

	"github.com/lmtpd/lmtpd/delivery/maildir"
	"github.com/lmtpd/lmtpd/directory"
)

// compileOwner resolves MaildirConfig.Owner and Group to ids (-1 for
// none) and checks the modes, reporting problems through fail.
func compileOwner(mc MaildirConfig, fail func(k []string, format string, args ...any)) (uid, gid int) {
	uid, gid = -1, -1
	if mc.Owner != "" {
		u, err := lookupID(mc.Owner, false)
		if err != nil {
			fail(key("Maildir", "Owner"), "%v", err)
		}
		uid = u
	}
	if mc.Group != "" {
		g, err := lookupID(mc.Group, true)
		if err != nil {
			fail(key("Maildir", "Group"), "%v", err)
		}
		gid = g
	}
	check := func(k string, m, need fs.FileMode, what string) {
		switch {
		case m&^0o777 != 0:
			fail(key("Maildir", k), "mode %#o: only permission bits (0000 to 0777) are allowed", m)
		case m != 0 && m&need != need:
			fail(key("Maildir", k), "mode %#04o: the owner must be able to %s (%#04o)", m, what, need)
		}
	}
	check("FileMode", mc.FileMode, 0o600, "read and write the files")
	check("DirMode", mc.DirMode, 0o700, "list, create in and enter the directories")
	if _, err := maildir.ParseFlushMode(mc.Flush); err != nil {
		fail(key("Maildir", "Flush"), "%q: want \"auto\", \"fsync\", \"syncfs\" or \"ordered\"", mc.Flush)
	}
	return uid, gid
}

// ownerWarnings returns what is odd about the maildir modes: files a group
// or others may read in directories they cannot enter.
func ownerWarnings(mc MaildirConfig) []string {
	fm, dm := mc.FileMode, mc.DirMode
	if fm == 0 {
		fm = maildir.FileMode
	}
	if dm == 0 {
		dm = maildir.DirMode
	}
	var w []string
	for _, c := range []struct {
		who        string
		read, srch fs.FileMode
	}{{"group", 0o040, 0o010}, {"others", 0o004, 0o001}} {
		if fm&c.read != 0 && dm&c.srch == 0 {
			w = append(w, fmt.Sprintf("maildir file mode %#04o lets the %s read mail files, but directory mode %#04o does not let them enter the directories: add %#04o to the directory mode", fm, c.who, dm, c.srch|c.read))
		}
	}
	return w
}

// lookupID resolves a user (group false) or group name, or a numeric id.
func lookupID(s string, group bool) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 {
			return -1, fmt.Errorf("%d is not a valid id", n)
		}
		return n, nil
	}
	var id string
	var err error
	if group {
		var g *osuser.Group
		if g, err = osuser.LookupGroup(s); err == nil {
			id = g.Gid
		}
	} else {
		var u *osuser.User
		if u, err = osuser.Lookup(s); err == nil {
			id = u.Uid
		}
	}
	var uu osuser.UnknownUserError
	var ug osuser.UnknownGroupError
	switch {
	case errors.As(err, &uu):
		return -1, fmt.Errorf("no such user %q", s)
	case errors.As(err, &ug):
		return -1, fmt.Errorf("no such group %q", s)
	case err != nil:
		return -1, err
	}
	return strconv.Atoi(id)
}

// checkHomeMailbox checks the absolute mailbox of a trusted record: a
// clean path inside Home (when set), other than Home itself.
func checkHomeMailbox(r *directory.Record) error {
	mb := r.Mailbox
	if filepath.Clean(mb) != mb || mb == "/" {
		return fmt.Errorf("the mailbox %q is not a clean absolute path", mb)
	}
	if r.Home == "" {
		return nil
	}
	if !filepath.IsAbs(r.Home) {
		return fmt.Errorf("the home %q is not an absolute path", r.Home)
	}
	rel, err := filepath.Rel(filepath.Clean(r.Home), mb)
	if err != nil || rel == "." || !filepath.IsLocal(rel) {
		return fmt.Errorf("the mailbox %q is not inside the home %q", mb, r.Home)
	}
	return nil
}

// mailbox returns the maildir.Mailbox of d: under the maildir root, or,
// for an absolute path (a trusted record), relative to its home (the
// mailbox's parent without one), where no symbolic link is followed. A
// record's uid and gid, when set, own what the delivery creates; both 0
// (root, and a Record's zero value) count as unset, as root never needs
// to own mail (Dovecot refuses uid 0 outright) and the configured owner
// then applies.
func mailbox(d *Destination) maildir.Mailbox {
	mb := maildir.Mailbox{Path: d.Mailbox, Folder: d.Folder, CreateFolder: d.CreateFolder}
	if d.UID > 0 || d.GID > 0 {
		mb.Owner = &maildir.Owner{UID: max(d.UID, -1), GID: max(d.GID, -1)}
		if mb.Owner.UID == 0 {
			mb.Owner.UID = -1
		}
		if mb.Owner.GID == 0 {
			mb.Owner.GID = -1
		}
	}
	if filepath.IsAbs(d.Mailbox) {
		home := d.Home
		if home == "" {
			home = filepath.Dir(d.Mailbox)
		}
		home = filepath.Clean(home)
		rel, _ := filepath.Rel(home, d.Mailbox) // checked by checkHomeMailbox
		mb.Home, mb.Path = home, filepath.ToSlash(rel)
	}
	return mb
}
