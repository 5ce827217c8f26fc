// Command benchfmt turns `go test -bench` output into the README's
// benchmark tables: per benchmark the median of its runs with the spread
// (min-max), and for benchmarks whose sub-benchmarks are named impl=NAME,
// the ratio of each other implementation to lmtpd measured in the same run.
//
//	go test -bench . -count 5 ./... | go run ./bench/benchfmt -readme README.md
//
// With -readme, the text between the markers <!-- bench:begin --> and
// <!-- bench:end --> is replaced; otherwise the tables go to stdout.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lmtpd/lmtpd/bench/internal/readme"
)

const (
	beginMarker = "<!-- bench:begin -->"
	endMarker   = "<!-- bench:end -->"
)

// series is every run of one benchmark: unit -> values.
type series struct {
	pkg    string
	name   string
	values map[string][]float64
	units  []string
}

func main() {
	readmePath := flag.String("readme", "", "rewrite the benchmark section of this file")
	command := flag.String("command", "make bench", "the command to name in the report")
	flag.Parse()

	all, order, err := parse(os.Stdin)
	if err != nil {
		log.Fatal(err)
	}
	if len(order) == 0 {
		log.Fatal("benchfmt: no benchmark results on stdin")
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "Measured %s with `%s` on %s.\n\n", time.Now().UTC().Format("2006-01-02"), *command, readme.Machine())
	fmt.Fprintf(&out, "Each figure is the median of the runs, with the spread (min–max) in brackets; ratios compare implementations measured side by side in the same run.\n")
	lastPkg := ""
	for _, key := range order {
		s := all[key]
		if s.pkg != lastPkg {
			fmt.Fprintf(&out, "\n### %s\n\n", s.pkg)
			fmt.Fprintf(&out, "| benchmark | time/op | B/op | allocs/op | other | vs lmtpd |\n|---|---|---|---|---|---|\n")
			lastPkg = s.pkg
		}
		fmt.Fprintf(&out, "| %s | %s | %s | %s | %s | %s |\n", s.name,
			cell(s, "ns/op"), cell(s, "B/op"), cell(s, "allocs/op"), others(s), ratio(all, s))
	}
	if *readmePath == "" {
		os.Stdout.Write(out.Bytes())
		return
	}
	if err := readme.Rewrite(*readmePath, beginMarker, endMarker, out.Bytes()); err != nil {
		log.Fatal(err)
	}
}

// parse reads benchmark lines, remembering the package from "pkg:" lines.
func parse(r io.Reader) (map[string]*series, []string, error) {
	all := map[string]*series{}
	var order []string
	pkg := ""
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimPrefix(p, "github.com/lmtpd/lmtpd/")
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		key := pkg + " " + name
		s := all[key]
		if s == nil {
			s = &series{pkg: pkg, name: strings.TrimPrefix(name, "Benchmark"), values: map[string][]float64{}}
			all[key] = s
			order = append(order, key)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			unit := f[i+1]
			if _, ok := s.values[unit]; !ok {
				s.units = append(s.units, unit)
			}
			s.values[unit] = append(s.values[unit], v)
		}
	}
	return all, order, sc.Err()
}

func median(v []float64) float64 {
	w := slices.Clone(v)
	slices.Sort(w)
	n := len(w)
	if n%2 == 1 {
		return w[n/2]
	}
	return (w[n/2-1] + w[n/2]) / 2
}

func format(unit string, v float64) string {
	switch unit {
	case "ns/op":
		switch {
		case v >= 1e9:
			return fmt.Sprintf("%.2f s", v/1e9)
		case v >= 1e6:
			return fmt.Sprintf("%.2f ms", v/1e6)
		case v >= 1e3:
			return fmt.Sprintf("%.1f µs", v/1e3)
		}
		return fmt.Sprintf("%.0f ns", v)
	case "B/op", "allocs/op":
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

func cell(s *series, unit string) string {
	v := s.values[unit]
	if len(v) == 0 {
		return ""
	}
	m := format(unit, median(v))
	if len(v) > 1 {
		lo, hi := slices.Min(v), slices.Max(v)
		if lo != hi {
			m += " (" + format(unit, lo) + "–" + format(unit, hi) + ")"
		}
	}
	return m
}

func others(s *series) string {
	var parts []string
	for _, u := range s.units {
		switch u {
		case "ns/op", "B/op", "allocs/op":
			continue
		}
		parts = append(parts, format(u, median(s.values[u]))+" "+u)
	}
	return strings.Join(parts, ", ")
}

// ratio compares s with the impl=lmtpd benchmark of the same group: time
// and allocations of the other implementation divided by lmtpd's. A
// variant, impl=NAME+VARIANT, is compared with impl=lmtpd+VARIANT when
// that exists.
func ratio(all map[string]*series, s *series) string {
	i := strings.Index(s.name, "impl=")
	if i < 0 {
		return ""
	}
	rest := s.name[i+5:]
	impl, tail, _ := strings.Cut(rest, "/")
	name, variant, _ := strings.Cut(impl, "+")
	if name == "lmtpd" {
		return "1×"
	}
	lookup := func(impl string) *series {
		base := s.name[:i] + "impl=" + impl
		if tail != "" {
			base += "/" + tail
		}
		return all[s.pkg+" Benchmark"+base]
	}
	l := lookup("lmtpd")
	if variant != "" {
		if v := lookup("lmtpd+" + variant); v != nil {
			l = v
		}
	}
	if l == nil {
		return ""
	}
	out := ""
	if a, b := s.values["ns/op"], l.values["ns/op"]; len(a) > 0 && len(b) > 0 {
		out = fmt.Sprintf("lmtpd %.2f× faster", median(a)/median(b))
	}
	if a, b := s.values["allocs/op"], l.values["allocs/op"]; len(a) > 0 && len(b) > 0 && median(b) > 0 {
		out += fmt.Sprintf(", %.2f× the allocs", median(b)/median(a))
	}
	return out
}
