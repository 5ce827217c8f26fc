package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/rs/zerolog"
)

var (
	logLevels    = []string{"trace", "debug", "info", "warn", "error"}
	logFormats   = []string{"auto", "json", "console"}
	protocols    = []string{"lmtp", "smtp", "policy", "socketmap"}
	tlsModes     = []string{"none", "starttls", "implicit"}
	authModes    = []string{"off", "optional", "required"}
	bareEndPolys = []string{"reject", "normalize"}
)

// oneOf checks an enumerated value.
func oneOf(ec *errorCollector, key, v string, allowed []string) bool {
	if slices.Contains(allowed, v) {
		return true
	}
	ec.addf(key, "%q is not one of %s", v, strings.Join(quoteAll(allowed), ", "))
	return false
}

func quoteAll(s []string) []string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = strconv.Quote(v)
	}
	return q
}

// validate checks everything that does not depend on the users file and
// builds the delivery configuration.
func (c *config) validate(ec *errorCollector) {
	if oneOf(ec, "log.level", c.Log.Level, logLevels) {
		c.logLevel, _ = zerolog.ParseLevel(c.Log.Level)
	}
	oneOf(ec, "log.format", c.Log.Format, logFormats)
	c.validateLogOutput(ec)
	if c.Server.Hostname != "" && strings.ContainsAny(c.Server.Hostname, " \t\r\n()[];") {
		ec.addf("server.hostname", "%q is not a host name", c.Server.Hostname)
	}
	if c.Server.MaxAuthVerifications < 0 {
		ec.addf("server.max_auth_verifications", "must not be negative (0 means the number of cores)")
	}
	if c.Server.User != "" {
		if _, err := lookupAccount(c.Server.User); err != nil {
			ec.add("server.user", err)
		}
	}
	c.validateListeners(ec)
	if c.Metrics.Address != "" {
		if err := checkTCPAddress(c.Metrics.Address); err != nil {
			ec.add("metrics.address", err)
		}
	}
	c.validateQuota(ec) // before validateDelivery, which compiles c.quota
	c.validateDelivery(ec)
	c.checkMTAReach(ec)
	c.validateDirectories(ec)
}

// checkTCPAddress checks host:port syntax and that the port is a number
// or a known service.
func checkTCPAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port or unix:/path (%v)", addr, strings.TrimPrefix(err.Error(), "address "+addr+": "))
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("%q: unknown port %q", addr, port)
	}
	if strings.ContainsAny(host, " /") {
		return fmt.Errorf("%q: invalid host %q", addr, host)
	}
	return nil
}

// systemError marks a check that failed on the state of the system (a
// directory missing, not writable, a file in the way), not on the text of
// the configuration: the same file works once the system is fixed. deliver
// reports these as temporary (see systemCondition).
type systemError struct{ err error }

func (e *systemError) Error() string { return e.err.Error() }
func (e *systemError) Unwrap() error { return e.err }

// checkWritableDir reports whether dir is a directory lmtpd can write
// into, or, if it does not exist yet, one lmtpd can create.
func checkWritableDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		parent := filepath.Dir(dir)
		for {
			pfi, perr := os.Stat(parent)
			if perr == nil {
				if !pfi.IsDir() {
					return fmt.Errorf("%s: %s is not a directory", dir, parent)
				}
				if err := syscall.Access(parent, 2|1); err != nil {
					return fmt.Errorf("%s does not exist and cannot be created: %s is not writable", dir, parent)
				}
				return nil
			}
			if next := filepath.Dir(parent); next != parent {
				parent = next
				continue
			}
			return fmt.Errorf("%s: %v", dir, perr)
		}
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if err := syscall.Access(dir, 2|1); err != nil {
		return fmt.Errorf("%s is not writable by this process (uid %d)", dir, os.Geteuid())
	}
	return nil
}

var logOutputs = []string{"stderr", "syslog"}

// validateLogOutput checks [log] output and the syslog keys.
func (c *config) validateLogOutput(ec *errorCollector) {
	oneOf(ec, "log.output", c.Log.Output, logOutputs)
	if _, ok := syslogFacilities[c.Log.Facility]; !ok {
		names := make([]string, 0, len(syslogFacilities))
		for n := range syslogFacilities {
			names = append(names, n)
		}
		slices.Sort(names)
		if near := closestKeys(c.Log.Facility, names); len(near) > 0 {
			ec.addf("log.facility", "%q is not a syslog facility; did you mean %s?", c.Log.Facility, strings.Join(near, " or "))
		} else {
			ec.addf("log.facility", "%q is not a syslog facility (%s)", c.Log.Facility, strings.Join(names, ", "))
		}
	}
	if c.Log.SyslogSocket != "" {
		if c.Log.Output != "syslog" {
			ec.add("log.syslog_socket", errors.New(`applies only to output = "syslog"`))
		} else if !filepath.IsAbs(c.Log.SyslogSocket) {
			ec.addf("log.syslog_socket", "%q is not an absolute path", c.Log.SyslogSocket)
		}
	}
}
