package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"github.com/lmtpd/lmtpd/sasl"
)

const hashPasswordUsage = `lmtpd hash-password [-user NAME] [-scheme NAME]

Reads a password and prints the password_hash (argon2id, for PLAIN and LOGIN)
and scram (SCRAM-SHA-256 keys) lines of an [[auth.user]] entry, ready to
paste. On a terminal it prompts twice with echo off; otherwise it reads the
first line of standard input. The password is never taken from the command
line, where other users could see it in the process list.

With -scheme it prints one line instead, the password in Dovecot's form
"{SCHEME}hash" for a SQL column, an LDAP attribute or a passwd-file (as
"doveadm pw -s SCHEME" does; with -user, as the password_hash of an
[[auth.user]] entry). Schemes: ARGON2ID, ARGON2I, BLF-CRYPT (or BCRYPT),
SHA512-CRYPT, SHA256-CRYPT, PBKDF2.`

func cmdHashPassword(args []string, stdin *os.File, stdout io.Writer, stderr *os.File) int {
	fs := newFlagSet("hash-password", hashPasswordUsage, stderr)
	name := fs.String("user", "", "also print the [[auth.user]] header and name = `NAME`")
	scheme := fs.String("scheme", "", "print only the password hashed with Dovecot scheme `NAME` (ARGON2ID, SHA512-CRYPT, BLF-CRYPT, PBKDF2...)")
	if st := parseFlags(fs, args); st >= 0 {
		return st
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "lmtpd hash-password: the password is read from standard input, not from arguments")
		fs.Usage()
		return exUsage
	}
	if *scheme != "" {
		// Refuse a bad scheme before asking for the password.
		if _, err := sasl.HashingScheme(*scheme); err != nil {
			fmt.Fprintf(stderr, "lmtpd hash-password: %v\n", err)
			return exUsage
		}
	}
	var pw string
	var err error
	if isTerminal(stdin) {
		pw, err = promptPassword(stdin, stderr)
	} else {
		pw, err = readPasswordLine(stdin)
	}
	if err != nil {
		fmt.Fprintf(stderr, "lmtpd hash-password: %v\n", err)
		if errors.Is(err, errPasswordMismatch) || errors.Is(err, errEmptyPassword) {
			return exDataErr
		}
		return exNoInput
	}
	if *scheme != "" {
		return printSchemeHash(stdout, stderr, *scheme, *name, pw)
	}
	hash, scram, err := sasl.MakeSecrets(pw)
	if err != nil {
		fmt.Fprintf(stderr, "lmtpd hash-password: %v\n", err)
		return exDataErr
	}
	if *name != "" {
		fmt.Fprintf(stdout, "[[auth.user]]\nname = %s\n", strconv.Quote(*name))
	}
	fmt.Fprintf(stdout, "password_hash = %s\nscram = %s\n", strconv.Quote(hash), strconv.Quote(scram))
	return exOK
}

// printSchemeHash prints pw hashed with a Dovecot scheme: the bare
// "{SCHEME}hash" line, or an [[auth.user]] entry when name is set.
func printSchemeHash(stdout io.Writer, stderr *os.File, scheme, name, pw string) int {
	hash, err := sasl.HashWithScheme(scheme, pw)
	if err != nil {
		fmt.Fprintf(stderr, "lmtpd hash-password: %v\n", err)
		return exDataErr
	}
	if name == "" {
		fmt.Fprintln(stdout, hash)
		return exOK
	}
	fmt.Fprintf(stdout, "[[auth.user]]\nname = %s\npassword_hash = %s\n", strconv.Quote(name), strconv.Quote(hash))
	return exOK
}

var (
	errPasswordMismatch = errors.New("the passwords do not match")
	errEmptyPassword    = errors.New("empty password")
)

// readPasswordLine reads the first line of r, without its line ending.
func readPasswordLine(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errEmptyPassword
	}
	return line, nil
}

// promptPassword asks twice on the terminal tty with echo off.
func promptPassword(tty *os.File, prompt io.Writer) (string, error) {
	restore, err := echoOff(tty)
	if err != nil {
		return "", err
	}
	defer restore()
	br := bufio.NewReader(tty)
	read := func(p string) (string, error) {
		fmt.Fprint(prompt, p)
		line, err := br.ReadString('\n')
		fmt.Fprintln(prompt)
		if err != nil && !errors.Is(err, io.EOF) {
			return "", err
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	a, err := read("Password: ")
	if err != nil {
		return "", err
	}
	if a == "" {
		return "", errEmptyPassword
	}
	b, err := read("Again: ")
	if err != nil {
		return "", err
	}
	if a != b {
		return "", errPasswordMismatch
	}
	return a, nil
}

// echoOff turns terminal echo off on f (as stty -echo)
// and returns the function that restores the previous state.
func echoOff(f *os.File) (func(), error) {
	var old syscall.Termios
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), ioctlGetTermios, uintptr(unsafe.Pointer(&old))); errno != 0 {
		return nil, fmt.Errorf("reading the terminal state: %w", errno)
	}
	t := old
	t.Lflag &^= syscall.ECHO
	t.Lflag |= syscall.ICANON
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), ioctlSetTermios, uintptr(unsafe.Pointer(&t))); errno != 0 {
		return nil, fmt.Errorf("turning echo off: %w", errno)
	}
	return func() {
		syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), ioctlSetTermios, uintptr(unsafe.Pointer(&old)))
	}, nil
}
