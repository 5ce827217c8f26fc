// Command report turns the end-to-end benchmark's results (JSON lines from
// bench/loadgen, see bench/internal/result) into markdown: one table per
// scenario with, for each server, the median of its runs and their spread
// (min–max) for messages per second, server CPU seconds per 1,000 messages
// and peak resident memory, and how lmtpd compares with it; then the
// targets of issue 7, each marked met or missed, and the proxy's figures
// of issue 16 (a front lmtpd handing mail to a backend lmtpd, against
// direct delivery to that backend).
//
//	go run ./bench/report -command 'scripts/bench-e2e.sh' results.jsonl
//	go run ./bench/report -readme README.md results.jsonl
//
// With -readme, the text between <!-- bench-e2e:begin --> and
// <!-- bench-e2e:end --> in that file is replaced; otherwise the markdown
// goes to stdout.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/lmtpd/lmtpd/bench/internal/readme"
	"github.com/lmtpd/lmtpd/bench/internal/result"
)

const (
	beginMarker = "<!-- bench-e2e:begin -->"
	endMarker   = "<!-- bench-e2e:end -->"
)

// group says which lmtpd a server is compared with.
type group int

const (
	groupNone    group = iota // no comparison
	groupMaildir              // delivering to maildir with fsync: compared with lmtpd
	groupSink                 // discarding: compared with lmtpsink
)

// serverInfo describes a server name used by scripts/bench-e2e.sh.
type serverInfo struct {
	label string
	group group
	base  bool // the lmtpd of its group
	// front: the process measured is the front of a setup whose other
	// process (the proxy's backend) works in the same window; that one's
	// CPU is in the run's OtherCPU, which then measures no background.
	front bool
}

var servers = map[string]serverInfo{
	"lmtpd":           {label: "lmtpd → maildir", group: groupMaildir, base: true},
	"lmtpd-fsync":     {label: "lmtpd → maildir, `flush = \"fsync\"` (two journal commits per message)", group: groupMaildir},
	"lmtpd-proxy":     {label: "lmtpd proxy → lmtpd → maildir (the front's CPU and RSS)", group: groupMaildir, front: true},
	"lmtpd-always":    {label: "lmtpd → maildir, `delivered_to = \"always\"` (a copy per recipient)", group: groupMaildir},
	"gosmtpd":         {label: "go-smtp → maildir (same fsyncs, hard links)", group: groupMaildir},
	"gosmtpd-copy":    {label: "go-smtp → maildir (same fsyncs, a copy per recipient)", group: groupMaildir},
	"dovecot":         {label: "Dovecot LMTP → maildir", group: groupMaildir},
	"lmtpsink":        {label: "lmtpd protocol core → discard", group: groupSink, base: true},
	"gosmtpd-discard": {label: "go-smtp → discard", group: groupSink},
	"smtp-sink":       {label: "Postfix smtp-sink", group: groupSink},
}

// baseOf returns the name of the lmtpd server g is compared with.
func baseOf(g group) string {
	switch g {
	case groupMaildir:
		return "lmtpd"
	case groupSink:
		return "lmtpsink"
	}
	return ""
}

// serverOrder lists known servers first, in the catalogue's order of
// presentation, then others by name.
var serverOrder = []string{"lmtpd", "lmtpd-fsync", "lmtpd-proxy", "lmtpd-always", "gosmtpd", "gosmtpd-copy", "dovecot", "lmtpsink", "gosmtpd-discard", "smtp-sink"}

// scenarioTitles names the scenarios of scripts/bench-e2e.sh.
var scenarioTitles = map[string]string{
	"1k-c1":    "1 KiB messages, 1 recipient, concurrency 1",
	"1k-c8":    "1 KiB messages, 1 recipient, concurrency 8",
	"1k-c64":   "1 KiB messages, 1 recipient, concurrency 64",
	"1k-c8-r5": "1 KiB messages, 5 recipients, concurrency 8",
	"100k-c8":  "100 KiB messages, 1 recipient, concurrency 8",
	"200m":     "One 200 MiB message",
	"idle-10k": "10,000 idle connections",
}

var scenarioOrder = []string{"1k-c1", "1k-c8", "1k-c64", "1k-c8-r5", "100k-c8", "200m", "idle-10k"}

// stats is one server's runs in one scenario.
type stats struct {
	server string
	runs   []result.Result
}

func (s *stats) values(f func(*result.Result) float64) []float64 {
	out := make([]float64, len(s.runs))
	for i := range s.runs {
		out[i] = f(&s.runs[i])
	}
	return out
}

func (s *stats) median(f func(*result.Result) float64) float64 { return median(s.values(f)) }

func (s *stats) errors() (n int64, first string) {
	for _, r := range s.runs {
		if r.Errors > 0 && first == "" {
			first = r.FirstError
		}
		n += r.Errors
	}
	return n, first
}

// metrics of a result.
var (
	msgsPerSec = func(r *result.Result) float64 { return r.MsgsPerSec }
	cpuPer1000 = func(r *result.Result) float64 { return r.CPUPer1000 }
	peakRSS    = func(r *result.Result) float64 { return float64(r.PeakRSS) }
	idleRSS    = func(r *result.Result) float64 { return float64(r.RSS) }
	idleConns  = func(r *result.Result) float64 { return float64(r.Idle) }
)

// scenario is every server's runs in one scenario.
type scenario struct {
	name    string
	servers []*stats
	byName  map[string]*stats
	idle    bool
	first   result.Result // for the load parameters
}

// byScenario groups results by scenario and server, in presentation order.
func byScenario(all []result.Result) []*scenario {
	m := map[string]*scenario{}
	for _, r := range all {
		sc := m[r.Scenario]
		if sc == nil {
			sc = &scenario{name: r.Scenario, byName: map[string]*stats{}, first: r}
			m[r.Scenario] = sc
		}
		if r.Idle > 0 {
			sc.idle = true
		}
		st := sc.byName[r.Server]
		if st == nil {
			st = &stats{server: r.Server}
			sc.byName[r.Server] = st
			sc.servers = append(sc.servers, st)
		}
		st.runs = append(st.runs, r)
	}
	var out []*scenario
	for _, sc := range m {
		slices.SortStableFunc(sc.servers, func(a, b *stats) int { return compareOrder(serverOrder, a.server, b.server) })
		out = append(out, sc)
	}
	slices.SortStableFunc(out, func(a, b *scenario) int { return compareOrder(scenarioOrder, a.name, b.name) })
	return out
}

// compareOrder sorts names listed in order by their position, before the
// others, which sort by name.
func compareOrder(order []string, a, b string) int {
	ia, ib := slices.Index(order, a), slices.Index(order, b)
	switch {
	case ia >= 0 && ib >= 0:
		return ia - ib
	case ia >= 0:
		return -1
	case ib >= 0:
		return 1
	}
	return strings.Compare(a, b)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	w := slices.Clone(v)
	slices.Sort(w)
	n := len(w)
	if n%2 == 1 {
		return w[n/2]
	}
	return (w[n/2-1] + w[n/2]) / 2
}

// cell formats the median of v with the spread in brackets.
func cell(v []float64, format func(float64) string) string {
	m := format(median(v))
	if lo, hi := slices.Min(v), slices.Max(v); len(v) > 1 && format(lo) != format(hi) {
		m += " (" + format(lo) + "–" + format(hi) + ")"
	}
	return m
}

func fmtRate(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func fmtCPU(v float64) string {
	if v >= 10 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

func fmtMiB(v float64) string { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }

func fmtKiB(v float64) string { return fmt.Sprintf("%.1f KiB", v/1024) }

func fmtRatio(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", v)
}

func label(server string) string {
	if info, ok := servers[server]; ok {
		return info.label
	}
	return server
}

func (sc *scenario) title() string {
	if t, ok := scenarioTitles[sc.name]; ok {
		return t
	}
	r := sc.first
	if sc.idle {
		return fmt.Sprintf("%s: %d idle connections", sc.name, r.Idle)
	}
	return fmt.Sprintf("%s: %d-byte messages, %d recipients, concurrency %d", sc.name, r.Size, r.Rcpts, r.Concurrency)
}

// base returns the lmtpd stats server st is compared with, or nil: the
// lmtpd of its group, or in a scenario without it (idle connections) the
// lmtpd daemon, then the protocol core.
func (sc *scenario) base(st *stats) *stats {
	info, ok := servers[st.server]
	if !ok || info.base {
		return nil
	}
	for _, name := range []string{baseOf(info.group), "lmtpd", "lmtpsink"} {
		if b := sc.byName[name]; b != nil && b != st {
			return b
		}
	}
	return nil
}

// single reports whether every run sent one message: then time and CPU
// for that message are shown instead of rates.
func (sc *scenario) single() bool {
	for _, st := range sc.servers {
		for _, r := range st.runs {
			if r.Messages != 1 {
				return false
			}
		}
	}
	return true
}

// background is the CPU used outside the server and the load generator,
// in cores: the median and the maximum over every run of the scenario,
// but for a proxy's front (its runs' OtherCPU holds the backend's work).
func (sc *scenario) background() (med, hi float64) {
	var v []float64
	for _, st := range sc.servers {
		if servers[st.server].front {
			continue
		}
		for _, r := range st.runs {
			if r.Elapsed > 0 {
				v = append(v, r.OtherCPU/r.Elapsed)
			}
		}
	}
	if len(v) == 0 {
		return 0, 0
	}
	return median(v), slices.Max(v)
}

// ratio is lmtpd's median over the other's: for msgs/s above 1 is better,
// for CPU and memory below 1 is better.
func ratio(base, other *stats, f func(*result.Result) float64) float64 {
	return base.median(f) / other.median(f)
}

// writeTable writes one scenario.
func writeTable(w io.Writer, sc *scenario) {
	r := sc.first
	fmt.Fprintf(w, "\n#### %s\n\n", sc.title())
	switch {
	case sc.idle:
		fmt.Fprintf(w, "`loadgen -idle %d`: every connection greeted and LHLO answered, then held; the server's RSS is read after that. Lower is better.\n\n", r.Idle)
		fmt.Fprintf(w, "| server | connections held | server RSS | per connection | lmtpd ÷ this: RSS |\n|---|---|---|---|---|\n")
		for _, st := range sc.servers {
			per := st.values(func(r *result.Result) float64 {
				if r.Idle == 0 {
					return math.NaN()
				}
				return float64(r.RSS) / float64(r.Idle)
			})
			cmp := ""
			if b := sc.base(st); b != nil {
				cmp = fmtRatio(ratio(b, st, idleRSS))
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", label(st.server), cell(st.values(idleConns), fmtRate),
				cell(st.values(idleRSS), fmtMiB), fmtKiB(median(per)), cmp)
		}
	case sc.single():
		fmt.Fprintf(w, "`loadgen -proto %s -n 1 -size %d`: the time from the first command to the last reply, the server's CPU time for it and its peak RSS. Lower is better.\n\n",
			r.Proto, r.Size)
		fmt.Fprintf(w, "| server | time s | server CPU s | peak RSS | lmtpd ÷ this: time | CPU | RSS |\n|---|---|---|---|---|---|---|\n")
		elapsed := func(r *result.Result) float64 { return r.Elapsed }
		cpu := func(r *result.Result) float64 { return r.ServerCPU }
		for _, st := range sc.servers {
			var t, c, m string
			if b := sc.base(st); b != nil {
				t, c, m = fmtRatio(ratio(b, st, elapsed)), fmtRatio(ratio(b, st, cpu)), fmtRatio(ratio(b, st, peakRSS))
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", label(st.server), cell(st.values(elapsed), fmtCPU),
				cell(st.values(cpu), fmtCPU), cell(st.values(peakRSS), fmtMiB), t, c, m)
		}
	default:
		fmt.Fprintf(w, "`loadgen -proto %s -c %d -rcpts %d -size %d`. Messages/s: higher is better; CPU and memory: lower is better.\n\n",
			r.Proto, r.Concurrency, r.Rcpts, r.Size)
		fmt.Fprintf(w, "| server | msgs/s | server CPU s / 1,000 msgs | peak RSS | lmtpd ÷ this: msgs/s | CPU | RSS |\n|---|---|---|---|---|---|---|\n")
		for _, st := range sc.servers {
			var rate, cpu, rss string
			if b := sc.base(st); b != nil {
				rate, cpu, rss = fmtRatio(ratio(b, st, msgsPerSec)), fmtRatio(ratio(b, st, cpuPer1000)), fmtRatio(ratio(b, st, peakRSS))
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", label(st.server), cell(st.values(msgsPerSec), fmtRate),
				cell(st.values(cpuPer1000), fmtCPU), cell(st.values(peakRSS), fmtMiB), rate, cpu, rss)
		}
	}
	if med, hi := sc.background(); hi >= 0.05 {
		fmt.Fprintf(w, "\nCPU used meanwhile by other processes and kernel threads (the ext4 journal and the loop device's workers among them): median %.2f cores, at most %.2f.\n", med, hi)
	}
}

// target is one goal of issue 7 (the maildir ones as issue 18 restated
// them against the hard-linking go-smtp reference).
type target struct {
	text     string
	scenario string
	server   string
	other    string                       // "" for an absolute bound (in bytes)
	metric   func(*result.Result) float64 // compared as server/other, or absolute
	atLeast  bool                         // ratio or value must be >= bound (else <=)
	bound    float64
}

var targets = []target{
	{text: "LMTP→maildir 1 KiB, c=8: ≥ 3× Dovecot's msgs/s", scenario: "1k-c8", server: "lmtpd", other: "dovecot", metric: msgsPerSec, atLeast: true, bound: 3},
	{text: "LMTP→maildir 1 KiB, c=8: ≥ 1.3× go-smtp's msgs/s", scenario: "1k-c8", server: "lmtpd", other: "gosmtpd", metric: msgsPerSec, atLeast: true, bound: 1.3},
	{text: "5 recipients: ≥ 6× Dovecot's msgs/s", scenario: "1k-c8-r5", server: "lmtpd", other: "dovecot", metric: msgsPerSec, atLeast: true, bound: 6},
	{text: "5 recipients: ≥ 2× go-smtp's msgs/s", scenario: "1k-c8-r5", server: "lmtpd", other: "gosmtpd", metric: msgsPerSec, atLeast: true, bound: 2},
	{text: "5 recipients: CPU/1,000 msgs ≤ go-smtp's", scenario: "1k-c8-r5", server: "lmtpd", other: "gosmtpd", metric: cpuPer1000, bound: 1},
	{text: "Null sink 1 KiB, c=8: CPU/1,000 msgs ≤ 0.7× go-smtp's", scenario: "1k-c8", server: "lmtpsink", other: "gosmtpd-discard", metric: cpuPer1000, bound: 0.7},
	{text: "Null sink 1 KiB, c=8: CPU/1,000 msgs ≤ 1.2× smtp-sink's", scenario: "1k-c8", server: "lmtpsink", other: "smtp-sink", metric: cpuPer1000, bound: 1.2},
	{text: "100 KiB, c=8: CPU/1,000 msgs ≤ smtp-sink's", scenario: "100k-c8", server: "lmtpsink", other: "smtp-sink", metric: cpuPer1000, bound: 1},
	{text: "200 MiB message: lmtpd's peak RSS ≤ 16 MiB", scenario: "200m", server: "lmtpd", metric: peakRSS, bound: 16 << 20},
	{text: "10,000 idle connections: lmtpd's RSS ≤ 250 MiB", scenario: "idle-10k", server: "lmtpd", metric: idleRSS, bound: 250 << 20},
}

// figure is a measured comparison with no bound to meet: the cost of
// lmtpd as a proxy (issue 16), a front lmtpd handing every recipient to
// a backend lmtpd, against direct delivery to that backend.
type figure struct {
	text     string
	scenario string
	server   string
	other    string
	metric   func(*result.Result) float64
	// absolute also shows the server's own median, formatted so.
	absolute func(float64) string
}

var figures = []figure{
	{text: "Proxy → lmtpd, 1 KiB, c=8: msgs/s ÷ direct delivery's", scenario: "1k-c8", server: "lmtpd-proxy", other: "lmtpd", metric: msgsPerSec},
	{text: "Proxy → lmtpd, 1 KiB, c=8: the front's CPU s / 1,000 msgs (÷ the direct lmtpd's)", scenario: "1k-c8", server: "lmtpd-proxy", other: "lmtpd", metric: cpuPer1000, absolute: fmtCPU},
	{text: "Proxy → lmtpd, 5 recipients: msgs/s ÷ direct delivery's", scenario: "1k-c8-r5", server: "lmtpd-proxy", other: "lmtpd", metric: msgsPerSec},
	{text: "Proxy → lmtpd, 5 recipients: the front's CPU s / 1,000 msgs (÷ the direct lmtpd's)", scenario: "1k-c8-r5", server: "lmtpd-proxy", other: "lmtpd", metric: cpuPer1000, absolute: fmtCPU},
}

// writeTargets writes the list of targets with the measured figures,
// then the proxy's figures, in one table.
func writeTargets(w io.Writer, scs []*scenario) {
	byName := map[string]*scenario{}
	for _, sc := range scs {
		byName[sc.name] = sc
	}
	var rows []string
	for _, t := range targets {
		sc := byName[t.scenario]
		if sc == nil || sc.byName[t.server] == nil || (t.other != "" && sc.byName[t.other] == nil) {
			continue
		}
		var v float64
		var shown string
		if t.other != "" {
			// Three decimals: a ratio just over its bound must not read
			// as equal to it.
			v = ratio(sc.byName[t.server], sc.byName[t.other], t.metric)
			shown = fmt.Sprintf("%.3f×", v)
		} else {
			v = sc.byName[t.server].median(t.metric)
			shown = fmtMiB(v)
		}
		ok := v <= t.bound
		if t.atLeast {
			ok = v >= t.bound
		}
		verdict := "met"
		if !ok {
			verdict = "**missed**"
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %s |\n", t.text, shown, verdict))
	}
	nTargets := len(rows)
	for _, f := range figures {
		sc := byName[f.scenario]
		if sc == nil || sc.byName[f.server] == nil || sc.byName[f.other] == nil {
			continue
		}
		shown := fmt.Sprintf("%.3f×", ratio(sc.byName[f.server], sc.byName[f.other], f.metric))
		if f.absolute != nil {
			shown = f.absolute(sc.byName[f.server].median(f.metric)) + " (" + shown + ")"
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | no target |\n", f.text, shown))
	}
	var title string
	switch {
	case len(rows) == 0:
		return
	case nTargets == 0:
		title = "The proxy's cost (issue 16)"
	case nTargets < len(rows):
		title = "Targets (issue 7) and the proxy's cost (issue 16)"
	default:
		title = "Targets (issue 7)"
	}
	fmt.Fprintf(w, "\n#### %s\n\n| target | measured | |\n|---|---|---|\n", title)
	for _, r := range rows {
		io.WriteString(w, r)
	}
}

// proxied reports whether some scenario has a proxy's front among its servers.
func proxied(scs []*scenario) bool {
	for _, sc := range scs {
		for _, st := range sc.servers {
			if servers[st.server].front {
				return true
			}
		}
	}
	return false
}

// report is the whole markdown section.
func report(all []result.Result, command, versions, fs string, now time.Time) []byte {
	var b bytes.Buffer
	scs := byScenario(all)
	runs := 0
	for _, sc := range scs {
		for _, st := range sc.servers {
			runs = max(runs, len(st.runs))
		}
	}
	fmt.Fprintf(&b, "End to end over loopback TCP, measured %s with `%s` on %s", now.UTC().Format("2006-01-02"), command, readme.Machine())
	if versions != "" {
		fmt.Fprintf(&b, "; %s", versions)
	}
	if fs != "" {
		fmt.Fprintf(&b, "; %s", fs)
	}
	fmt.Fprintf(&b, ".\n\n")
	fmt.Fprintf(&b, "Load from `bench/loadgen`: each connection is reused for one transaction after another, "+
		"MAIL, RCPTs and DATA pipelined in one write as Postfix does, every reply checked. "+
		"Every server is started fresh for each run on a fresh maildir tree. "+
		"Each figure is the median of %d runs, with the spread (min–max) in brackets. "+
		"Server CPU is user+system time of the server's whole process tree (Dovecot: master and its workers) over the run; "+
		"peak RSS is VmHWM (summed over the tree). The load generator runs on the same machine and competes for the CPUs. "+
		"The null sink of lmtpd is `bench/lmtpsink`, lmtpd's protocol core with a discarding backend: the daemon has no discarding backend.", runs)
	if proxied(scs) {
		fmt.Fprintf(&b, " The proxy row is lmtpd as a front handing every recipient over loopback LMTP to a second lmtpd set up as the direct row, "+
			"which stores it: its CPU and RSS are the front's alone (the backend's work is left out, of the other-CPU line too), "+
			"its msgs/s what the client gets through both.")
	}
	fmt.Fprintf(&b, "\n")
	for _, sc := range scs {
		writeTable(&b, sc)
		for _, st := range sc.servers {
			if n, first := st.errors(); n > 0 {
				fmt.Fprintf(&b, "\n%s: %d errors over its runs; the first: `%s`.\n", label(st.server), n, first)
			}
		}
	}
	writeTargets(&b, scs)
	return b.Bytes()
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is main with its exit status, for tests.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	readmePath := fs.String("readme", "", "rewrite the end-to-end benchmark section of this file")
	command := fs.String("command", "scripts/bench-e2e.sh", "the command to name in the report")
	versions := fs.String("versions", "", "versions of the servers compared, for the report's first line")
	fsDesc := fs.String("fs", "", "the file system the maildirs were on, for the report's first line")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	in := stdin
	switch fs.NArg() {
	case 0:
	case 1:
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			fmt.Fprintln(stderr, "report:", err)
			return 1
		}
		defer f.Close()
		in = f
	default:
		fmt.Fprintln(stderr, "report: at most one results file")
		return 2
	}
	all, err := result.ReadAll(in)
	if err != nil {
		fmt.Fprintln(stderr, "report:", err)
		return 1
	}
	if len(all) == 0 {
		fmt.Fprintln(stderr, "report: no results")
		return 1
	}
	out := report(all, *command, *versions, *fsDesc, time.Now())
	if *readmePath == "" {
		stdout.Write(out)
		return 0
	}
	if err := readme.Rewrite(*readmePath, beginMarker, endMarker, out); err != nil {
		fmt.Fprintln(stderr, "report:", err)
		return 1
	}
	return 0
}
