// Command lmtpd is an LMTP and SMTP delivery gateway: it accepts mail from
// an MTA such as Postfix (or directly) and delivers it to maildirs and
// pipe commands.
//
// Usage:
//
//	lmtpd [serve] [-config FILE]        run the daemon (the default)
//	lmtpd check-config [-config FILE]   validate, print the effective configuration
//	lmtpd deliver [-config FILE] [-f SENDER] RECIPIENT...
//	                                    deliver one message from standard input
//	lmtpd quota [-config FILE] [-json] [-recalc] ADDRESS...
//	                                    print mailbox usage and limits
//	lmtpd lookup [-config FILE] [-json] ADDRESS...
//	                                    print what mail for each address would do
//	lmtpd hash-password                 make password_hash and scram lines
//	lmtpd version                       print the version, commit and Go version
//	lmtpd completion bash|zsh           print a shell completion script
//	lmtpd help [COMMAND]                list the commands, or a command's flags
//
// "lmtpd -h" (or --help) lists the commands; "lmtpd --version" (or
// -version) is "lmtpd version". The manual pages lmtpd(8) and
// lmtpd.toml(5) in contrib/man/ are generated from these usage texts and
// config.example.toml ("make man").
//
// Without -config, lmtpd uses its embedded default: LMTP on the unix socket
// ./run/lmtp.sock, SMTP on 127.0.0.1:2525, any user at localhost and
// example.test, maildirs under ./mail/{domain}/{user}.
//
// Exit statuses follow sysexits(3): 0 success, 64 usage, 78 configuration
// error; deliver also uses 67 (unknown user), 75 (temporary failure) and
// others, see deliver.go.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/lmtpd/lmtpd/protocol"
)

// version and commit are set at build time with -ldflags "-X main.version=...
// -X main.commit=..." (the Makefile does); see version.go for the fallbacks.
var version, commit = "", ""

// Exit statuses: sysexits(3), whose one table (and its mapping to and
// from replies) is protocol's, and 1 for a failure after start-up.
const (
	exOK          = protocol.ExitOK
	exFailure     = 1 // a failure after start-up (a listener died, a forced stop)
	exUsage       = protocol.ExitUsage
	exDataErr     = protocol.ExitDataErr
	exNoInput     = protocol.ExitNoInput
	exNoUser      = protocol.ExitNoUser
	exNoHost      = protocol.ExitNoHost
	exUnavailable = protocol.ExitUnavailable
	exSoftware    = protocol.ExitSoftware
	exOSErr       = protocol.ExitOSErr
	exCantCreat   = protocol.ExitCantCreat
	exIOErr       = protocol.ExitIOErr
	exTempFail    = protocol.ExitTempFail
	exProtocol    = protocol.ExitProtocol
	exNoPerm      = protocol.ExitNoPerm
	exConfig      = protocol.ExitConfig
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run dispatches to a subcommand and returns the exit status.
func run(args []string, stdin *os.File, stdout io.Writer, stderr *os.File) int {
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help":
			fmt.Fprint(stdout, mainUsage)
			return exOK
		case "-version", "--version":
			return cmdVersion(args[1:], stdout, stderr)
		}
	}
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return cmdServe(args, stderr)
	case "check-config":
		return cmdCheckConfig(args, stdout, stderr)
	case "deliver":
		return cmdDeliver(args, stdin, stderr)
	case "quota":
		return cmdQuota(args, stdout, stderr)
	case "lookup":
		return cmdLookup(args, stdout, stderr)
	case "hash-password":
		return cmdHashPassword(args, stdin, stdout, stderr)
	case "version":
		return cmdVersion(args, stdout, stderr)
	case "sievec":
		return cmdSievec(args, stdout, stderr)
	case "sieve-test":
		return cmdSieveTest(args, stdout, stderr)
	case "completion":
		return cmdCompletion(args, stdout, stderr)
	case "help":
		return cmdHelp(args, stdout, stderr)
	}
	fmt.Fprintf(stderr, "lmtpd: unknown command %q\n\n%s", cmd, mainUsage)
	return exUsage
}

// newFlagSet returns a flag set for a subcommand whose -h prints usage
// (a synopsis and the flags) to stderr.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; it returns -1 to continue, or an exit status:
// 0 after -h, 64 after a bad flag.
func parseFlags(fs *flag.FlagSet, args []string) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exOK
		}
		return exUsage
	}
	return -1
}

// printConfigError writes a configuration error, one problem per line.
func printConfigError(stderr io.Writer, err error) {
	var ce configErrors
	if errors.As(err, &ce) {
		for _, e := range ce {
			fmt.Fprintf(stderr, "lmtpd: %s\n", e)
		}
		return
	}
	fmt.Fprintf(stderr, "lmtpd: %v\n", err)
}
