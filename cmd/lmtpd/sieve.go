package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lmtpd/lmtpd/delivery"
	"github.com/lmtpd/lmtpd/sieve"
)

const sievecUsage = `lmtpd sievec SCRIPT...

Compiles each Sieve script and prints every error as file:line:column: message.
Exit status 0 when all scripts compile, 1 otherwise.`

// cmdSievec checks scripts (Pigeonhole's sievec, without a binary output).
func cmdSievec(args []string, stdout, stderr io.Writer) int {
	fset := newFlagSet("sievec", sievecUsage, stderr)
	if st := parseFlags(fset, args); st >= 0 {
		return st
	}
	if fset.NArg() == 0 {
		fset.Usage()
		return exUsage
	}
	status := exOK
	for _, path := range fset.Args() {
		src, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(stderr, "lmtpd sievec: %v\n", err)
			status = exFailure
			continue
		}
		if _, err := sieve.Compile(path, src, nil); err != nil {
			fmt.Fprintln(stdout, err)
			status = exFailure
		}
	}
	return status
}

const sieveTestUsage = `lmtpd sieve-test [-config FILE] [-from ADDR] [-to ADDR] [-orig-to ADDR] [-json] [-state DIR] [-global-dir DIR] SCRIPT MESSAGE

Runs a Sieve script against a message file and prints the actions it would
take; it delivers and sends nothing. A vacation is listed only when a reply
would be sent (the RFC 5230 rules and the :days tracking, kept in -state, a
fresh temporary directory by default). -from "" is the null sender; without
-from the message's Return-Path is used. include :personal scripts are
NAME.sieve next to SCRIPT, :global ones NAME.sieve in -global-dir, else in
[sieve] global_dir of -config. With -config the script runs with the limits
and the spamtest and virustest settings of its [sieve] section (spamtest_header
and the others), as delivery runs it; without, spamtest and virustest answer 0.
Exit status 0, also after a run-time error (then reported, with the implicit
keep), or 1 with the errors when the script does not compile.`

// sieveTestOutput is the -json form.
type sieveTestOutput struct {
	Actions      []map[string]any `json:"actions"`
	ImplicitKeep bool             `json:"implicit_keep"`
	Errors       []string         `json:"errors"`
}

func cmdSieveTest(args []string, stdout, stderr io.Writer) int {
	fset := newFlagSet("sieve-test", sieveTestUsage, stderr)
	from := fset.String("from", "", "envelope sender `ADDR` (\"\" is the null sender)")
	to := fset.String("to", "", "envelope recipient `ADDR` (default: the first To of the message, else user@localhost)")
	origTo := fset.String("orig-to", "", "original recipient (ORCPT) `ADDR`")
	asJSON := fset.Bool("json", false, "print one JSON object")
	stateDir := fset.String("state", "", "vacation and duplicate tracking `DIR` (default: a fresh temporary directory)")
	globalDir := fset.String("global-dir", "", "`DIR` of include :global scripts (default: [sieve] global_dir of -config)")
	configPath := fset.String("config", "", "read [sieve] global_dir, limits and spamtest/virustest settings from this configuration `FILE`")
	if st := parseFlags(fset, args); st >= 0 {
		return st
	}
	if fset.NArg() != 2 {
		fset.Usage()
		return exUsage
	}
	fromSet := false
	fset.Visit(func(f *flag.Flag) {
		if f.Name == "from" {
			fromSet = true
		}
	})
	var opts *sieve.Options
	if *configPath != "" {
		sc, err := sieveSettings(*configPath)
		if err != nil {
			fmt.Fprintf(stderr, "lmtpd sieve-test: %v\n", err)
			return exUsage
		}
		if *globalDir == "" {
			*globalDir = sc.GlobalDir
		}
		opts = sc.ScriptOptions()
	}
	scriptPath, msgPath := fset.Arg(0), fset.Arg(1)
	src, err := os.ReadFile(scriptPath)
	if err != nil {
		fmt.Fprintf(stderr, "lmtpd sieve-test: %v\n", err)
		return exNoInput
	}
	data, err := os.ReadFile(msgPath)
	if err != nil {
		fmt.Fprintf(stderr, "lmtpd sieve-test: %v\n", err)
		return exNoInput
	}
	out := sieveTestOutput{Actions: []map[string]any{}, Errors: []string{}}
	script, err := sieve.Compile(scriptPath, src, nil)
	if err != nil {
		var el sieve.ErrorList
		if errors.As(err, &el) {
			for _, e := range el {
				out.Errors = append(out.Errors, e.Error())
			}
		} else {
			out.Errors = append(out.Errors, err.Error())
		}
		if *asJSON {
			out.ImplicitKeep = true
			writeJSON(stdout, out)
		} else {
			fmt.Fprintln(stderr, strings.Join(out.Errors, "\n"))
		}
		return exFailure
	}
	msg := sieve.ParseMessage(data)
	if !fromSet {
		*from = firstAddress(msg, "Return-Path")
	}
	if *to == "" {
		if *to = firstAddress(msg, "To"); *to == "" {
			*to = "user@localhost"
		}
	}
	dir := *stateDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "lmtpd-sieve-test-")
		if err != nil {
			fmt.Fprintf(stderr, "lmtpd sieve-test: %v\n", err)
			return exOSErr
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	tr := &fileTracker{dir: dir, now: time.Now}
	env := &sieve.Env{
		Envelope: sieve.Envelope{From: *from, To: *to, OrigTo: *origTo},
		Tracker:  tr,
		Loader:   &dirLoader{personal: filepath.Dir(scriptPath), global: *globalDir},
	}
	res, err := script.Execute(context.Background(), msg, env, opts)
	if err != nil {
		out.Errors = append(out.Errors, err.Error())
	} else {
		for _, a := range res.Actions {
			if a.Kind == sieve.ActVacation {
				if err := tr.mark(a.Vacation.TrackKey); err != nil {
					out.Errors = append(out.Errors, err.Error())
				}
			}
		}
		for _, m := range res.Marks {
			if err := tr.mark(m.Key); err != nil {
				out.Errors = append(out.Errors, err.Error())
			}
		}
	}
	out.ImplicitKeep = res.ImplicitKeep
	for _, a := range res.Actions {
		out.Actions = append(out.Actions, actionJSON(a))
	}
	if *asJSON {
		writeJSON(stdout, out)
		return exOK
	}
	for _, a := range res.Actions {
		fmt.Fprintln(stdout, a.String())
	}
	for _, e := range res.HeaderEdits {
		fmt.Fprintln(stdout, "edit "+e.String())
	}
	if res.ImplicitKeep {
		fmt.Fprintln(stdout, "implicit keep")
	}
	for _, e := range out.Errors {
		fmt.Fprintf(stderr, "lmtpd sieve-test: run-time error: %s\n", e)
	}
	return exOK
}

// sieveSettings returns [sieve] of the configuration file at path, read,
// checked and with its relative paths resolved by the loader the daemon
// uses (loadConfig), so that sieve-test sees the directory and settings
// the daemon would and refuses a configuration the daemon would refuse.
func sieveSettings(path string) (*delivery.SieveConfig, error) {
	c, err := loadConfig(path)
	if err != nil {
		return nil, err
	}
	sc := c.Sieve.delivery()
	return &sc, nil
}

func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// actionJSON renders an action as the issue's -json format describes.
func actionJSON(a sieve.Action) map[string]any {
	m := map[string]any{"action": string(a.Kind)}
	switch a.Kind {
	case sieve.ActKeep, sieve.ActFileinto:
		if a.Kind == sieve.ActFileinto {
			m["mailbox"] = a.Mailbox
			m["copy"] = a.Copy
			if a.Create {
				m["create"] = true
			}
			if a.SpecialUse != "" {
				m["specialuse"] = a.SpecialUse
			}
		}
		m["flags"] = append([]string{}, a.Flags...)
	case sieve.ActRedirect:
		m["address"] = a.Address
		m["copy"] = a.Copy
	case sieve.ActReject, sieve.ActEreject:
		m["reason"] = a.Reason
	case sieve.ActNotify:
		m["method"] = a.Notify.Method
		m["message"] = a.Notify.Message
		m["importance"] = a.Notify.Importance
		if a.Notify.From != "" {
			m["from"] = a.Notify.From
		}
	case sieve.ActVacation:
		v := a.Vacation
		m["reason"] = v.Reason
		m["subject"] = v.Subject
		m["from"] = v.From
		m["to"] = v.To
		m["handle"] = v.Handle
		if v.Period%(24*time.Hour) == 0 {
			m["days"] = int(v.Period / (24 * time.Hour))
		} else {
			m["seconds"] = int(v.Period / time.Second)
		}
	}
	return m
}

// firstAddress returns the first address of a header field, or "".
func firstAddress(msg sieve.Message, name string) string {
	for _, h := range msg.Header() {
		if strings.EqualFold(h.Name, name) {
			v := strings.TrimSpace(h.Value)
			if i := strings.IndexByte(v, '<'); i >= 0 {
				if j := strings.IndexByte(v[i:], '>'); j > 0 {
					return v[i+1 : i+j]
				}
			}
			if i := strings.IndexByte(v, ','); i >= 0 {
				v = v[:i]
			}
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// dirLoader loads include scripts: NAME.sieve in the personal or global
// directory (the name was checked by sieve: no "/", no leading ".").
type dirLoader struct{ personal, global string }

func (l *dirLoader) LoadScript(_ context.Context, loc sieve.Location, name string) (*sieve.Script, error) {
	dir := l.personal
	if loc == sieve.Global {
		dir = l.global
	}
	if dir == "" {
		return nil, fmt.Errorf("no directory for %s scripts: %w", loc, sieve.ErrNotFound)
	}
	path := filepath.Join(dir, name+".sieve")
	src, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", path, sieve.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return sieve.Compile(path, src, nil)
}

// fileTracker keeps one file per key (named by its SHA-256) holding the
// Unix time it was marked.
type fileTracker struct {
	dir string
	now func() time.Time
}

func (t *fileTracker) path(key string) string {
	h := sha256.Sum256([]byte(key))
	return filepath.Join(t.dir, hex.EncodeToString(h[:]))
}

func (t *fileTracker) Seen(_ context.Context, key string, period time.Duration) (bool, error) {
	b, err := os.ReadFile(t.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	sec, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return false, nil
	}
	return t.now().Sub(time.Unix(sec, 0)) < period, nil
}

func (t *fileTracker) mark(key string) error {
	return os.WriteFile(t.path(key), []byte(strconv.FormatInt(t.now().Unix(), 10)+"\n"), 0o600)
}
