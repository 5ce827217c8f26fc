package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/bench/internal/result"
)

// load makes the runs of one server in a throughput scenario: one result
// per rate, with CPU per 1,000 messages cpu and peak RSS rss MiB.
func load(scenario, server string, cpu float64, rss int64, rates ...float64) []result.Result {
	var out []result.Result
	for i, r := range rates {
		out = append(out, result.Result{Scenario: scenario, Server: server, Run: i + 1, Proto: "lmtp",
			Concurrency: 8, Rcpts: 1, Size: 1024, Messages: int64(r * 4), Elapsed: 4, MsgsPerSec: r,
			CPUPer1000: cpu, ServerCPU: cpu * r * 4 / 1000, PeakRSS: rss << 20})
	}
	return out
}

func fixture() []result.Result {
	var all []result.Result
	add := func(rs []result.Result) { all = append(all, rs...) }
	// Out of presentation order on purpose.
	add(load("1k-c8", "dovecot", 1.2, 100, 800, 900, 850))
	add(load("1k-c8", "lmtpd", 0.4, 18, 3000, 2800, 2600))
	add(load("1k-c8", "gosmtpd-copy", 1.4, 12, 700, 700, 700))
	add(load("1k-c8", "gosmtpd", 1.1, 12, 1400, 1300, 1500))
	add(load("1k-c8", "lmtpsink", 0.03, 13, 40000, 40000, 40000))
	add(load("1k-c8", "gosmtpd-discard", 0.05, 12, 20000, 20000, 20000))
	add(load("1k-c8", "smtp-sink", 0.02, 8, 30000, 30000, 30000))
	add(load("1k-c8", "lmtpd-proxy", 0.25, 20, 2000, 2100, 1900))
	add(load("mystery", "other-server", 1, 5, 10))
	for i, rss := range []int64{13, 14, 15} {
		all = append(all, result.Result{Scenario: "200m", Server: "lmtpd", Run: i + 1, Proto: "lmtp", Size: 200 << 20,
			Messages: 1, Elapsed: 1, MsgsPerSec: 1, ServerCPU: 0.8, CPUPer1000: 800, PeakRSS: rss << 20})
		all = append(all, result.Result{Scenario: "200m", Server: "dovecot", Run: i + 1, Proto: "lmtp", Size: 200 << 20,
			Messages: 1, Elapsed: 2, MsgsPerSec: 0.5, ServerCPU: 1.6, CPUPer1000: 1600, PeakRSS: 31 << 20})
	}
	all = append(all,
		result.Result{Scenario: "idle-10k", Server: "lmtpd", Run: 1, Idle: 10000, Elapsed: 1, RSS: 180 << 20, PeakRSS: 180 << 20},
		result.Result{Scenario: "idle-10k", Server: "smtp-sink", Run: 1, Idle: 10000, Elapsed: 10, RSS: 2500 << 20, PeakRSS: 2500 << 20,
			Errors: 2, FirstError: "greeting: EOF", OtherCPU: 5},
	)
	return all
}

func TestReport(t *testing.T) {
	out := string(report(fixture(), "scripts/bench-e2e.sh", "Dovecot 2.3", "maildirs on ext4", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)))
	want := []string{
		"measured 2026-01-02 with `scripts/bench-e2e.sh` on ",
		"; Dovecot 2.3; maildirs on ext4.",
		"median of 3 runs",
		"#### 1 KiB messages, 1 recipient, concurrency 8",
		// median 2800 of 2600..3000; no ratio for lmtpd itself
		"| lmtpd → maildir | 2800 (2600–3000) | 0.400 | 18.0 MiB |  |  |  |",
		// 2800/850 = 3.29, 0.4/1.2 = 0.33, 18/100
		"| Dovecot LMTP → maildir | 850 (800–900) | 1.200 | 100.0 MiB | 3.29× | 0.33× | 0.18× |",
		"| go-smtp → maildir (same fsyncs, hard links) | 1400 (1300–1500) | 1.100 | 12.0 MiB | 2.00× | 0.36× | 1.50× |\n" +
			// the copying variant: its own row, right after the fair reference
			"| go-smtp → maildir (same fsyncs, a copy per recipient) | 700 | 1.400 | 12.0 MiB | 4.00× | 0.29× | 1.50× |",
		// sinks compare with the protocol core
		"| Postfix smtp-sink | 30000 | 0.020 | 8.0 MiB | 1.33× | 1.50× | 1.62× |",
		// the proxy's front right after the direct lmtpd: 2800/2000,
		// 0.4/0.25, 18/20
		"| lmtpd → maildir | 2800 (2600–3000) | 0.400 | 18.0 MiB |  |  |  |\n" +
			"| lmtpd proxy → lmtpd → maildir (the front's CPU and RSS) | 2000 (1900–2100) | 0.250 | 20.0 MiB | 1.40× | 1.60× | 0.90× |",
		"The proxy row is lmtpd as a front",
		"#### mystery: 1024-byte messages, 1 recipients, concurrency 8",
		"| other-server | 10.0 | 1.000 | 5.0 MiB |  |  |  |",
		"#### One 200 MiB message",
		"| time s | server CPU s | peak RSS |",
		"| lmtpd → maildir | 1.000 | 0.800 | 14.0 MiB (13.0 MiB–15.0 MiB) |  |  |  |",
		"| Dovecot LMTP → maildir | 2.000 | 1.600 | 31.0 MiB | 0.50× | 0.50× | 0.45× |",
		"#### 10,000 idle connections",
		// smtp-sink is compared with the daemon when the core is absent
		"| Postfix smtp-sink | 10000 | 2500.0 MiB | 256.0 KiB | 0.07× |",
		"Postfix smtp-sink: 2 errors over its runs; the first: `greeting: EOF`.",
		"median 0.25 cores, at most 0.50",
		"| LMTP→maildir 1 KiB, c=8: ≥ 3× Dovecot's msgs/s | 3.294× | met |",
		"| LMTP→maildir 1 KiB, c=8: ≥ 1.3× go-smtp's msgs/s | 2.000× | met |",
		"| Null sink 1 KiB, c=8: CPU/1,000 msgs ≤ 0.7× go-smtp's | 0.600× | met |",
		"| Null sink 1 KiB, c=8: CPU/1,000 msgs ≤ 1.2× smtp-sink's | 1.500× | **missed** |",
		"| 200 MiB message: lmtpd's peak RSS ≤ 16 MiB | 14.0 MiB | met |",
		"| 10,000 idle connections: lmtpd's RSS ≤ 250 MiB | 180.0 MiB | met |",
		"#### Targets (issue 7) and the proxy's cost (issue 16)",
		// 2000/2800
		"| Proxy → lmtpd, 1 KiB, c=8: msgs/s ÷ direct delivery's | 0.714× | no target |",
		"| Proxy → lmtpd, 1 KiB, c=8: the front's CPU s / 1,000 msgs (÷ the direct lmtpd's) | 0.250 (0.625×) | no target |",
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("report lacks %q", w)
		}
	}
	// Targets whose scenario was not measured are left out.
	if strings.Contains(out, "5 recipients") || strings.Contains(out, "100 KiB") {
		t.Errorf("report lists targets of scenarios that were not run:\n%s", out)
	}
	// Scenarios in presentation order, unknown ones last.
	order := []string{"concurrency 8\n", "One 200 MiB", "10,000 idle", "mystery:", "Targets"}
	last := -1
	for _, o := range order {
		i := strings.Index(out, o)
		if i < last {
			t.Errorf("%q out of order", o)
		}
		last = i
	}
	if t.Failed() {
		t.Log(out)
	}
}

// TestReportProxy: the proxy's front and the direct lmtpd alone give
// the proxy's figures under their own title; the front's runs, whose
// OtherCPU holds the backend's work, are no background; without a proxy
// row the report does not explain one.
func TestReportProxy(t *testing.T) {
	all := load("1k-c8-r5", "lmtpd", 0.8, 18, 1000, 1100, 1200)
	for _, r := range load("1k-c8-r5", "lmtpd-proxy", 0.3, 20, 800, 900, 1000) {
		r.OtherCPU = 3 // the backend's 0.75 cores over 4 s
		all = append(all, r)
	}
	out := string(report(all, "x", "", "", time.Now()))
	want := []string{
		"| lmtpd proxy → lmtpd → maildir (the front's CPU and RSS) | 900 (800–1000) | 0.300 | 20.0 MiB | 1.22× | 2.67× | 0.90× |",
		"#### The proxy's cost (issue 16)",
		"| Proxy → lmtpd, 5 recipients: msgs/s ÷ direct delivery's | 0.818× | no target |",
		"| Proxy → lmtpd, 5 recipients: the front's CPU s / 1,000 msgs (÷ the direct lmtpd's) | 0.300 (0.375×) | no target |",
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("report lacks %q", w)
		}
	}
	for _, bad := range []string{"Targets (issue 7)", "CPU used meanwhile", "1 KiB, c=8"} {
		if strings.Contains(out, bad) {
			t.Errorf("report has %q", bad)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
	if out := string(report(load("1k-c8", "lmtpd", 1, 5, 10), "x", "", "", time.Now())); strings.Contains(out, "proxy") {
		t.Errorf("report without a proxy row mentions one:\n%s", out)
	}
}

// TestReportNoTargets: without the scenarios of any target, no targets
// table.
func TestReportNoTargets(t *testing.T) {
	out := string(report(load("mystery", "lmtpd", 1, 5, 10), "x", "", "", time.Now()))
	if strings.Contains(out, "Targets") {
		t.Errorf("targets table without targets:\n%s", out)
	}
}

func TestCompareOrder(t *testing.T) {
	order := []string{"b", "a"}
	tests := []struct {
		a, b string
		sign int
	}{
		{"b", "a", -1}, {"a", "b", 1}, {"a", "z", -1}, {"z", "a", 1}, {"x", "y", -1}, {"y", "x", 1}, {"a", "a", 0},
	}
	for _, tc := range tests {
		t.Run(tc.a+tc.b, func(t *testing.T) {
			got := compareOrder(order, tc.a, tc.b)
			if (got < 0) != (tc.sign < 0) || (got > 0) != (tc.sign > 0) {
				t.Errorf("compareOrder(%q, %q) = %d, want sign %d", tc.a, tc.b, got, tc.sign)
			}
		})
	}
}

func TestFormats(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"rate large", fmtRate(1234.4), "1234"},
		{"rate small", fmtRate(0.55), "0.6"},
		{"cpu small", fmtCPU(0.1234), "0.123"},
		{"cpu large", fmtCPU(830), "830.0"},
		{"ratio", fmtRatio(1.005), "1.00×"},
		{"ratio of zero", fmtRatio(1 / zero()), "–"},
		{"cell one run", cell([]float64{5}, fmtRate), "5.0"},
		{"cell same", cell([]float64{5, 5}, fmtRate), "5.0"},
		{"cell even", cell([]float64{100, 300}, fmtRate), "200 (100–300)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
}

func zero() float64 { return 0 }

func writeResults(t *testing.T, rs []result.Result) string {
	t.Helper()
	var b bytes.Buffer
	for i := range rs {
		if err := result.Write(&b, &rs[i]); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "results.jsonl")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRunReadme(t *testing.T) {
	results := writeResults(t, fixture())
	readme := filepath.Join(t.TempDir(), "README.md")
	orig := "# x\n\nbefore\n" + beginMarker + "\nold tables\n" + endMarker + "\nafter\n"
	if err := os.WriteFile(readme, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-readme", readme, "-command", "make bench", results}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	data, _ := os.ReadFile(readme)
	got := string(data)
	if strings.Contains(got, "old tables") || !strings.HasPrefix(got, "# x\n\nbefore\n"+beginMarker+"\n") ||
		!strings.HasSuffix(got, endMarker+"\nafter\n") || !strings.Contains(got, "with `make bench`") {
		t.Errorf("README after rewrite:\n%s", got)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout %q with -readme", stdout.String())
	}
}

func TestRunStdin(t *testing.T) {
	data, err := os.ReadFile(writeResults(t, fixture()))
	if err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	if code := run(nil, bytes.NewReader(data), &stdout, os.Stderr); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(stdout.String(), "#### Targets") {
		t.Errorf("stdout %q", stdout.String())
	}
}

func TestRunErrors(t *testing.T) {
	results := writeResults(t, fixture())
	noMarkers := filepath.Join(t.TempDir(), "README.md")
	os.WriteFile(noMarkers, []byte("# no markers\n"), 0o644)
	empty := filepath.Join(t.TempDir(), "empty.jsonl")
	os.WriteFile(empty, nil, 0o644)
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	os.WriteFile(bad, []byte("{\n"), 0o644)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"missing file", []string{"/nonexistent/results.jsonl"}, 1, "no such file"},
		{"two files", []string{results, results}, 2, "at most one"},
		{"no results", []string{empty}, 1, "no results"},
		{"bad json", []string{bad}, 1, "line 1"},
		{"no markers", []string{"-readme", noMarkers, results}, 1, "markers"},
		{"missing readme", []string{"-readme", "/nonexistent/README.md", results}, 1, "no such file"},
		{"unknown flag", []string{"-bogus"}, 2, "flag provided but not defined"},
		{"help", []string{"-h"}, 0, "-readme"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := run(tc.args, strings.NewReader(""), &bytes.Buffer{}, &stderr); code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tc.want)
			}
		})
	}
}
