package main

// Checks of the configuration against this system's accounts and file
// system, beyond the text: whether the account lmtpd runs as can create
// its sockets and give them the configured owner and group, write the
// maildir root and the spool directory, and whether the MTA's account
// ([server] mta_user) can connect to the sockets it creates. The first
// are start-up failures that check-config reports (checkStartup); the
// last is a warning found at every load (checkMTAReach), since a socket
// may well be meant for another client.

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// account is a user the file system checks are made for, with the
// groups the kernel would give it.
type account struct {
	name string // for messages
	uid  int
	gids []int // the primary group first
	// self: the process itself, whose access the kernel tells
	// (access(2), which also sees ACLs, supplementary groups given by
	// systemd, read-only mounts and capabilities).
	self bool
}

// processAccount is the account of this process.
func processAccount() account {
	gids, _ := os.Getgroups()
	return account{name: "this process", uid: os.Geteuid(), gids: append([]int{os.Getegid()}, gids...), self: true}
}

// lookupAccount finds a user by name or number in the system's user
// database, with its primary group and the groups that list it.
func lookupAccount(name string) (account, error) {
	u, err := user.Lookup(name)
	if err != nil {
		if _, nerr := strconv.Atoi(name); nerr == nil {
			u, err = user.LookupId(name)
		}
	}
	if err != nil {
		return account{}, fmt.Errorf("no such user %q", name)
	}
	a := account{name: "user " + u.Username}
	if a.uid, err = strconv.Atoi(u.Uid); err != nil {
		return account{}, fmt.Errorf("user %q: uid %q is not a number", name, u.Uid)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return account{}, fmt.Errorf("user %q: gid %q is not a number", name, u.Gid)
	}
	a.gids = []int{gid}
	if ids, err := u.GroupIds(); err == nil {
		for _, s := range ids {
			if g, err := strconv.Atoi(s); err == nil && !slices.Contains(a.gids, g) {
				a.gids = append(a.gids, g)
			}
		}
	}
	return a, nil
}

// String names the account for a message: "user postfix (uid 105)".
func (a account) String() string { return fmt.Sprintf("%s (uid %d)", a.name, a.uid) }

func (a account) inGroup(gid int) bool { return slices.Contains(a.gids, gid) }

// may reports whether a has the permissions want (4 read, 2 write, 1
// search/execute) on path, whose stat is fi: the kernel's answer for the
// process itself, else the mode bits of the class a falls in (owner,
// group, others), root having every permission but execute on a file
// without any x bit.
func (a account) may(path string, fi os.FileInfo, want uint32) bool {
	if a.self {
		return syscall.Access(path, want) == nil
	}
	if a.uid == 0 {
		return want&1 == 0 || fi.IsDir() || fi.Mode().Perm()&0o111 != 0
	}
	uid, gid := fileOwner(fi)
	perm := uint32(fi.Mode().Perm())
	switch {
	case uid == a.uid:
		perm >>= 6
	case a.inGroup(gid):
		perm >>= 3
	}
	return perm&want == want
}

// fileOwner returns the owner and group of fi.
func fileOwner(fi os.FileInfo) (uid, gid int) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), int(st.Gid)
	}
	return -1, -1
}

// describeFile says who owns path and with which mode, for a message
// that tells what to change: "/run/lmtpd (mode 0750, owner lmtpd, group
// lmtpd)".
func describeFile(path string, fi os.FileInfo) string {
	uid, gid := fileOwner(fi)
	owner, group := strconv.Itoa(uid), strconv.Itoa(gid)
	if u, err := user.LookupId(owner); err == nil {
		owner = u.Username
	}
	if g, err := user.LookupGroupId(group); err == nil {
		group = g.Name
	}
	return fmt.Sprintf("%s (mode %04o, owner %s, group %s)", path, uint32(fi.Mode().Perm()), owner, group)
}

// readOnlyFS, which reports whether a path is on a file system mounted
// read-only, is in readonlyfs_*.go: statfs(2) names its flags field
// differently on each system.

// checkDirFor checks that account a can work in dir: every directory
// from / down to it searchable by a, dir itself writable and not on a
// read-only file system; if dir does not exist yet, that a can create it
// (the deepest directory that exists is writable). It describes what is
// in the way: which directory, its mode and owner.
func checkDirFor(dir string, a account) error {
	dir = filepath.Clean(dir)
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("%s is not an absolute path", dir)
	}
	cur := "/"
	fi, err := os.Stat(cur)
	if err != nil {
		return err
	}
	for _, part := range strings.Split(strings.TrimPrefix(dir, "/"), "/") {
		if !a.may(cur, fi, 1) {
			return fmt.Errorf("%s cannot reach %s: no search (x) permission on %s", a, dir, describeFile(cur, fi))
		}
		if part == "" {
			break
		}
		next := filepath.Join(cur, part)
		nfi, err := os.Stat(next)
		if errors.Is(err, os.ErrNotExist) {
			switch {
			case readOnlyFS(cur):
				return fmt.Errorf("%s does not exist and cannot be created: %s is on a read-only file system", dir, cur)
			case !a.may(cur, fi, 2|1):
				return fmt.Errorf("%s does not exist and %s cannot create it: %s is not writable for it", dir, a, describeFile(cur, fi))
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s cannot reach %s: %w", a, dir, err)
		}
		if !nfi.IsDir() {
			return fmt.Errorf("%s is not a directory, so %s cannot be one", next, dir)
		}
		cur, fi = next, nfi
	}
	if readOnlyFS(dir) {
		return fmt.Errorf("%s is on a read-only file system", dir)
	}
	if !a.may(dir, fi, 2|1) {
		return fmt.Errorf("%s is not writable for %s", describeFile(dir, fi), a)
	}
	return nil
}

// runAccount is the account lmtpd runs as for the checks: [server] user
// when it is set and this process is another one (check-config run by
// root for the service's user), else this process.
func (c *config) runAccount() (account, error) {
	if c.Server.User == "" {
		return processAccount(), nil
	}
	a, err := lookupAccount(c.Server.User)
	if err != nil {
		return account{}, err
	}
	if a.uid == os.Geteuid() {
		// The kernel knows the groups a unit's SupplementaryGroups=
		// adds; the group file does not.
		self := processAccount()
		self.name = a.name
		return self, nil
	}
	return a, nil
}

// checkStartup reports, as errors at their keys, what serve would fail
// on when it starts as the run account: a socket's directory it cannot
// reach, create or write, a file in the way of a socket, a socket owner
// or group it may not give, a maildir root or spool directory it cannot
// write. check-config runs it after loadConfig; a listener that systemd
// passes (named in LISTEN_FDNAMES) is not checked, its socket exists.
func (c *config) checkStartup(ec *errorCollector) {
	run, err := c.runAccount()
	if err != nil {
		ec.add("server.user", err)
		return
	}
	activated := strings.Split(os.Getenv("LISTEN_FDNAMES"), ":")
	for i := range c.Listeners {
		l := &c.Listeners[i]
		path, ok := l.isUnix()
		if !ok || path == "" || slices.Contains(activated, l.Name) {
			continue
		}
		key := func(k string) string { return joinKey(indexKey("listener", i), k) }
		fi, err := os.Lstat(path)
		switch {
		case err == nil && fi.Mode().Type() == os.ModeSocket:
			// A socket is there: one systemd made for this listener
			// (ExecStartPre= does not always see LISTEN_FDNAMES), or one
			// a running or crashed lmtpd left, which serve tells apart
			// itself. The directory need not be writable for the first.
		case err == nil:
			ec.add(key("address"), &systemError{fmt.Errorf("%s exists and is not a socket", path)})
		default:
			if err := checkDirFor(filepath.Dir(path), run); err != nil {
				ec.add(key("address"), &systemError{fmt.Errorf("cannot create the socket: %w", err)})
			}
		}
		if l.SocketOwner != "" && run.uid != 0 {
			if uid, err := lookupUID(l.SocketOwner); err == nil && uid != run.uid {
				ec.add(key("socket_owner"), &systemError{fmt.Errorf("%s cannot give the socket to %s (uid %d): only root can change a file's owner; leave socket_owner out and use socket_group", run, l.SocketOwner, uid)})
			}
		}
		if l.SocketGroup != "" && run.uid != 0 {
			if gid, err := lookupGID(l.SocketGroup); err == nil && !run.inGroup(gid) {
				ec.add(key("socket_group"), &systemError{fmt.Errorf("%s is not in group %s (gid %d), so it cannot give the socket that group: add it to the group (usermod -aG, or SupplementaryGroups= in its systemd unit)", run, l.SocketGroup, gid)})
			}
		}
	}
	if c.Log.Output == "syslog" {
		if w, err := dialSyslog(c.Log); err != nil {
			e := c.syslogError(err)
			ec.add(e.Key, e.Err)
		} else {
			w.Close()
		}
	}
	if run.self {
		return // loadConfig checked the directories for this process already
	}
	if root := c.dcfg.Maildir.Root; root != "" && domainsUseMaildir(c.Domains) {
		if err := checkDirFor(root, run); err != nil {
			ec.add("delivery.maildir.root", &systemError{err})
		}
	}
	if dir := c.dcfg.Spool.Dir; dir != "" {
		if err := checkDirFor(dir, run); err != nil {
			ec.add("delivery.spool.dir", &systemError{err})
		}
	}
}

// defaultMTAUser is server.mta_user's default, when such a user exists.
const defaultMTAUser = "postfix"

// mtaAccount returns the account of [server] mta_user, or postfix when
// it is not set and such a user exists; ok is false when there is none
// to check for.
func (c *config) mtaAccount(ec *errorCollector) (a account, ok bool) {
	name := c.Server.MTAUser
	if name == "" {
		if c.embedded {
			return account{}, false // the demonstration is for nc -U and swaks
		}
		if _, err := user.Lookup(defaultMTAUser); err != nil {
			return account{}, false
		}
		name = defaultMTAUser
	}
	a, err := lookupAccount(name)
	if err != nil {
		ec.add("server.mta_user", err)
		return account{}, false
	}
	return a, true
}

// checkMTAReach warns about each unix listener whose socket the MTA's
// account will not be able to connect to: it needs search permission on
// every directory above the socket and write permission on the socket,
// which lmtpd creates with socket_mode, owned by socket_owner (else the
// run account) and group socket_group (else the run account's primary
// group). Postfix would log "Permission denied" and defer every message.
func (c *config) checkMTAReach(ec *errorCollector) {
	mta, ok := c.mtaAccount(ec)
	if !ok || mta.uid == 0 {
		return
	}
	run, err := c.runAccount()
	if err != nil {
		return // reported by checkStartup
	}
	activated := strings.Split(os.Getenv("LISTEN_FDNAMES"), ":")
	for i := range c.Listeners {
		l := &c.Listeners[i]
		path, ok := l.isUnix()
		if !ok || path == "" || slices.Contains(activated, l.Name) {
			continue // systemd's SocketMode= and SocketGroup= decide for a passed socket
		}
		key := joinKey(indexKey("listener", i), "address")
		if why := socketUnreachable(path, l, run, mta); why != "" {
			c.warnings = append(c.warnings, &configError{File: c.file, Line: ec.loc.line(key), Key: key,
				Err: fmt.Errorf("%s, the MTA (server.mta_user), will not be able to connect to %s: %s", mta, path, why)})
		}
	}
}

// socketUnreachable says why mta cannot connect to the socket at path
// that lmtpd, running as run, creates for l; "" if it can.
func socketUnreachable(path string, l *listenerConfig, run, mta account) string {
	// Directories: those that exist must be searchable; lmtpd creates
	// the missing ones with mode 0755.
	for _, d := range ancestors(filepath.Dir(filepath.Clean(path))) {
		fi, err := os.Stat(d)
		if err != nil {
			break
		}
		if !mta.may(d, fi, 1) {
			return fmt.Sprintf("no search (x) permission on %s; give that directory to a group of %s with mode 0750 or 0710, or put the socket elsewhere", describeFile(d, fi), mta.name)
		}
	}
	uid, gid := run.uid, -1
	if len(run.gids) > 0 {
		gid = run.gids[0]
	}
	if fi, err := os.Stat(filepath.Dir(path)); err == nil && fi.Mode()&os.ModeSetgid != 0 {
		_, gid = fileOwner(fi) // a new file takes a setgid directory's group
	}
	if l.SocketOwner != "" {
		if n, err := lookupUID(l.SocketOwner); err == nil {
			uid = n
		}
	}
	if l.SocketGroup != "" {
		if n, err := lookupGID(l.SocketGroup); err == nil {
			gid = n
		}
	}
	mode := uint32(l.SocketMode)
	var class string
	bits := mode
	switch {
	case uid == mta.uid:
		bits, class = mode>>6, "its owner"
	case mta.inGroup(gid):
		bits, class = mode>>3, "in its group"
	default:
		class = "neither its owner nor in its group"
	}
	if bits&2 != 0 {
		return ""
	}
	group := strconv.Itoa(gid)
	if g, err := user.LookupGroupId(group); err == nil {
		group = g.Name
	}
	return fmt.Sprintf("the socket will have mode %04o and group %s, and %s is %s; set socket_group to a group of %s (socket_group = %q, with lmtpd in that group) or socket_mode", mode, group, mta.name, class, mta.name, primaryGroupName(mta))
}

// primaryGroupName returns the name of a's primary group, or its number.
func primaryGroupName(a account) string {
	if len(a.gids) == 0 {
		return ""
	}
	s := strconv.Itoa(a.gids[0])
	if g, err := user.LookupGroupId(s); err == nil {
		return g.Name
	}
	return s
}

// ancestors returns "/" and every directory down to dir (absolute, clean),
// dir included.
func ancestors(dir string) []string {
	out := []string{"/"}
	cur := "/"
	for _, part := range strings.Split(strings.TrimPrefix(dir, "/"), "/") {
		if part == "" {
			continue
		}
		cur = filepath.Join(cur, part)
		out = append(out, cur)
	}
	return out
}

// syslogError is the start-up error of a syslog daemon lmtpd cannot
// connect to, at the key that names its socket.
func (c *config) syslogError(err error) *configError {
	key := "log.output"
	if c.Log.SyslogSocket != "" {
		key = "log.syslog_socket"
	}
	return &configError{File: c.file, Line: c.locs[c.file].line(key), Key: key,
		Err: &systemError{fmt.Errorf("cannot connect to the syslog daemon: %w", err)}}
}

// runUserMismatch describes a daemon running as another account than
// [server] user, whose checks were then made for the wrong one; "" if
// it runs as that user or none is configured.
func (c *config) runUserMismatch() string {
	if c.Server.User == "" {
		return ""
	}
	a, err := lookupAccount(c.Server.User)
	if err != nil || a.uid == os.Geteuid() {
		return ""
	}
	return fmt.Sprintf("lmtpd runs as uid %d, not as %s that server.user names: the configuration's checks were made for that user; set User= in the systemd unit (or fix server.user)", os.Geteuid(), a)
}
