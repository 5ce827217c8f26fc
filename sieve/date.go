package sieve

import (
	"fmt"
	"net/mail"
	"strings"
	"time"
)

// parseZone parses a :zone argument, "+hhmm" or "-hhmm" (RFC 5260 section
// 4.1).
func parseZone(s string) (*time.Location, bool) {
	if len(s) != 5 || (s[0] != '+' && s[0] != '-') {
		return nil, false
	}
	for i := 1; i < 5; i++ {
		if !isDigit(s[i]) {
			return nil, false
		}
	}
	h := int(s[1]-'0')*10 + int(s[2]-'0')
	m := int(s[3]-'0')*10 + int(s[4]-'0')
	if h > 23 || m > 59 {
		return nil, false
	}
	off := h*3600 + m*60
	if s[0] == '-' {
		off = -off
	}
	return time.FixedZone(s, off), true
}

// datePart renders one date part (RFC 5260 section 4.2).
func datePart(t time.Time, part string) string {
	switch part {
	case "year":
		return fmt.Sprintf("%04d", t.Year())
	case "month":
		return fmt.Sprintf("%02d", int(t.Month()))
	case "day":
		return fmt.Sprintf("%02d", t.Day())
	case "date":
		return t.Format("2006-01-02")
	case "julian":
		// The Modified Julian Day: days since 1858-11-17.
		d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
		return fmt.Sprintf("%d", d.Unix()/86400+40587)
	case "hour":
		return fmt.Sprintf("%02d", t.Hour())
	case "minute":
		return fmt.Sprintf("%02d", t.Minute())
	case "second":
		return fmt.Sprintf("%02d", t.Second())
	case "time":
		return t.Format("15:04:05")
	case "iso8601":
		// RFC 3339 section 5.6 writes UTC as "Z", as Pigeonhole does.
		return t.Format("2006-01-02T15:04:05Z07:00")
	case "std11":
		return t.Format("Mon, 02 Jan 2006 15:04:05 -0700")
	case "zone":
		return t.Format("-0700")
	case "weekday":
		return fmt.Sprintf("%d", int(t.Weekday()))
	}
	return ""
}

// parseDateValue reads a date header (RFC 5322 section 3.3); for Received
// the date follows the last ";" (RFC 5260 section 4.1).
func parseDateValue(v string) (time.Time, bool) {
	if i := strings.LastIndexByte(v, ';'); i >= 0 {
		v = v[i+1:]
	}
	t, err := mail.ParseDate(strings.TrimSpace(v))
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

func (r *run) dateTest(f *frame, n *node) (bool, error) {
	loc := r.env.Location
	if loc == nil {
		loc = time.Local
	}
	if z, ok, err := r.tagString(f, n, "zone"); err != nil {
		return false, err
	} else if ok {
		zl, valid := parseZone(z)
		if !valid {
			return false, r.fail(f, n.pos, ErrInvalidArgument, "invalid time zone %q", z)
		}
		loc = zl
	}
	partArg := n.args[len(n.args)-2]
	part, err := r.str(f, n, partArg.strs[0])
	if err != nil {
		return false, err
	}
	part = lower(part)
	if !dateParts[part] {
		return false, nil
	}
	var times []time.Time
	if n.name == "currentdate" {
		times = []time.Time{r.now.In(loc)}
	} else {
		h, err := r.str(f, n, n.args[0].strs[0])
		if err != nil {
			return false, err
		}
		for _, v := range indexed(n, r.fields(h)) {
			t, ok := parseDateValue(r.decodeHeader(v))
			if !ok {
				continue
			}
			if !n.has("originalzone") {
				t = t.In(loc)
			}
			times = append(times, t)
		}
	}
	vals := make([]string, len(times))
	for i, t := range times {
		vals[i] = datePart(t, part)
	}
	return r.matchKeys(f, n, vals, n.args[len(n.args)-1])
}
