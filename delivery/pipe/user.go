package pipe

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
)

// passwdFile is read for the run-as user's login shell, which os/user does
// not report.
var passwdFile = "/etc/passwd"

// runAs is a resolved run-as identity.
type runAs struct {
	cred *syscall.Credential
	env  []string // HOME, LOGNAME, SHELL
}

// lookupRunAs resolves Command.User and Command.Group. Both empty: nil, the
// command runs as lmtpd. The credential carries only the primary (or given)
// group, like Postfix's set_ugid: no supplementary groups, so that the
// command gets no more than the account it names.
func lookupRunAs(userName, groupName string) (*runAs, error) {
	if userName == "" {
		if groupName != "" {
			return nil, fmt.Errorf("pipe: group %q set without a user", groupName)
		}
		return nil, nil
	}
	if geteuid() != 0 {
		return nil, fmt.Errorf("pipe: run-as user %q needs lmtpd to run as root (euid is %d)", userName, geteuid())
	}
	u, err := lookupUser(userName)
	if err != nil {
		return nil, err
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pipe: user %q: uid %q: %w", userName, u.Uid, err)
	}
	gidStr := u.Gid
	if groupName != "" {
		g, err := lookupGroup(groupName)
		if err != nil {
			return nil, err
		}
		gidStr = g.Gid
	}
	gid, err := strconv.ParseUint(gidStr, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pipe: user %q: gid %q: %w", userName, gidStr, err)
	}
	ra := &runAs{
		cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{uint32(gid)}},
		env:  []string{"HOME=" + u.HomeDir, "LOGNAME=" + u.Username},
	}
	if sh := loginShell(u.Username); sh != "" {
		ra.env = append(ra.env, "SHELL="+sh)
	}
	return ra, nil
}

// lookupUser finds a user by name or, for all digits, by uid.
func lookupUser(s string) (*user.User, error) {
	u, err := user.Lookup(s)
	var unknown user.UnknownUserError
	if errors.As(err, &unknown) && isDigits(s) {
		u, err = user.LookupId(s)
	}
	if err != nil {
		return nil, fmt.Errorf("pipe: run-as user: %w", err)
	}
	return u, nil
}

// lookupGroup finds a group by name or, for all digits, by gid.
func lookupGroup(s string) (*user.Group, error) {
	g, err := user.LookupGroup(s)
	var unknown user.UnknownGroupError
	if errors.As(err, &unknown) && isDigits(s) {
		g, err = user.LookupGroupId(s)
	}
	if err != nil {
		return nil, fmt.Errorf("pipe: run-as group: %w", err)
	}
	return g, nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// loginShell returns the shell field of name's entry in passwdFile, or ""
// when there is none (an account from NSS other than files, say); SHELL is
// then left out rather than guessed.
func loginShell(name string) string {
	f, err := os.Open(passwdFile)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// name:passwd:uid:gid:gecos:dir:shell (passwd(5))
		fields := strings.Split(sc.Text(), ":")
		if len(fields) == 7 && fields[0] == name {
			return fields[6]
		}
	}
	return ""
}
