package main

import (
	"strings"
	"testing"
)

const sample = `goos: linux
pkg: github.com/lmtpd/lmtpd/protocol
BenchmarkTransaction/impl=lmtpd-2    20000   10000 ns/op   100.0 MB/s   2000 B/op   40 allocs/op
BenchmarkTransaction/impl=lmtpd-2    20000   12000 ns/op   100.0 MB/s   2000 B/op   40 allocs/op
BenchmarkTransaction/impl=lmtpd-2    20000   11000 ns/op   100.0 MB/s   2000 B/op   40 allocs/op
BenchmarkTransaction/impl=go-smtp-2  20000   22000 ns/op    50.0 MB/s   1000 B/op   50 allocs/op
BenchmarkTransaction/impl=lmtpd+header-parse-2    20000   15000 ns/op   100.0 MB/s   2000 B/op   60 allocs/op
BenchmarkTransaction/impl=go-smtp+header-parse-2  20000   30000 ns/op    50.0 MB/s   1000 B/op   90 allocs/op
pkg: github.com/lmtpd/lmtpd/sasl
BenchmarkAuth-2   10   45000000 ns/op   67000000 B/op   45 allocs/op
`

func TestParseAndRatio(t *testing.T) {
	all, order, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(order) != 5 {
		t.Fatalf("order %q", order)
	}
	l := all["protocol BenchmarkTransaction/impl=lmtpd"]
	if l == nil || len(l.values["ns/op"]) != 3 || median(l.values["ns/op"]) != 11000 {
		t.Fatalf("lmtpd series %+v", l)
	}
	if got := cell(l, "ns/op"); got != "11.0 µs (10.0 µs–12.0 µs)" {
		t.Errorf("cell = %q", got)
	}
	g := all["protocol BenchmarkTransaction/impl=go-smtp"]
	if got := ratio(all, g); got != "lmtpd 2.00× faster, 0.80× the allocs" {
		t.Errorf("ratio = %q", got)
	}
	// A variant is compared with lmtpd's same variant.
	gp := all["protocol BenchmarkTransaction/impl=go-smtp+header-parse"]
	if got := ratio(all, gp); got != "lmtpd 2.00× faster, 0.67× the allocs" {
		t.Errorf("variant ratio = %q", got)
	}
	if got := ratio(all, all["protocol BenchmarkTransaction/impl=lmtpd+header-parse"]); got != "1×" {
		t.Errorf("lmtpd variant ratio = %q", got)
	}
	if got := ratio(all, all["sasl BenchmarkAuth"]); got != "" {
		t.Errorf("ratio without impl= = %q", got)
	}
	if got := others(l); got != "100 MB/s" {
		t.Errorf("others = %q", got)
	}
}
