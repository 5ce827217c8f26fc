package quota

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Limits are a user's quota limits. Zero means unlimited, as in Maildir++
// and Dovecot.
type Limits struct {
	Bytes    int64
	Messages int64
}

// Unlimited reports whether neither limit is set.
func (l Limits) Unlimited() bool { return l.Bytes <= 0 && l.Messages <= 0 }

// String formats l as the first line of maildirsize, the way Dovecot
// writes it: "<bytes>S" unless only a message limit is set, ",<count>C"
// when a message limit is set, and "0S" when neither is.
func (l Limits) String() string {
	var b strings.Builder
	if l.Bytes > 0 || l.Messages <= 0 {
		b.WriteString(strconv.FormatInt(max(l.Bytes, 0), 10))
		b.WriteByte('S')
	}
	if l.Messages > 0 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(l.Messages, 10))
		b.WriteByte('C')
	}
	return b.String()
}

// errBadLimits is returned by ParseLimits for a malformed definition.
var errBadLimits = errors.New("quota: malformed Maildir++ quota definition")

// ParseLimits parses a Maildir++ quota definition such as
// "10000000S,1000C". Members are comma-separated; a zero value means
// unlimited. Unknown members (Courier's old "F" and "N", garbage) make it
// an error, but the members that did parse are still returned, as Dovecot
// does when it reads a header it half understands.
func ParseLimits(s string) (Limits, error) {
	var l Limits
	var err error
	for m := range strings.SplitSeq(s, ",") {
		if len(m) < 2 {
			err = errBadLimits
			continue
		}
		v, perr := strconv.ParseInt(m[:len(m)-1], 10, 64)
		if perr != nil || v < 0 {
			err = errBadLimits
			continue
		}
		switch m[len(m)-1] {
		case 'S':
			l.Bytes = v
		case 'C':
			l.Messages = v
		default:
			err = errBadLimits
		}
	}
	return l, err
}

// Usage is what a maildir holds: bytes and messages.
type Usage struct {
	Bytes    int64
	Messages int64
}

// Add returns u with d added.
func (u Usage) Add(d Usage) Usage {
	return Usage{Bytes: u.Bytes + d.Bytes, Messages: u.Messages + d.Messages}
}

// Grace is how far a message may take a user past a limit: Dovecot's
// quota_grace. A user under the limit may receive a message that leaves
// them within limit + grace; a user at or over the limit receives nothing.
// The zero value is no grace.
type Grace struct {
	// Percent of the limit, if Bytes is 0.
	Percent int64
	// Bytes, absolute.
	Bytes int64
}

// ParseGrace parses "10%", "0" or a byte count ("1048576").
func ParseGrace(s string) (Grace, error) {
	s = strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseInt(p, 10, 64)
		if err != nil || v < 0 || v > 1000 {
			return Grace{}, fmt.Errorf("quota: grace %q: want a percentage from 0%% to 1000%%", s)
		}
		return Grace{Percent: v}, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return Grace{}, fmt.Errorf("quota: grace %q: want a percentage (\"10%%\") or a byte count", s)
	}
	return Grace{Bytes: v}, nil
}

// of returns the grace for a limit.
func (g Grace) of(limit int64) int64 {
	if g.Bytes > 0 {
		return g.Bytes
	}
	return limit / 100 * g.Percent
}

// Verdict is the answer of Check.
type Verdict int

const (
	// Fits: the message may be stored.
	Fits Verdict = iota
	// OverQuota: the user is already at or over a limit.
	OverQuota
	// TooBig: the user is under the limits, but this message would take
	// them past limit + grace.
	TooBig
)

// String names v for logs.
func (v Verdict) String() string {
	switch v {
	case Fits:
		return "fits"
	case OverQuota:
		return "over quota"
	case TooBig:
		return "too big for the remaining quota"
	}
	return "Verdict(" + strconv.Itoa(int(v)) + ")"
}

// Check decides whether a message of size bytes may be added to usage
// under limits with grace g. A size of 0 or less (unknown, as at RCPT
// without SIZE=) only checks that the user is under the limits. The
// message limit allows no grace: one more message past it is refused.
func Check(l Limits, u Usage, size int64, g Grace) Verdict {
	if l.Bytes > 0 && u.Bytes >= l.Bytes || l.Messages > 0 && u.Messages >= l.Messages {
		return OverQuota
	}
	if l.Bytes > 0 && size > 0 && u.Bytes+size > l.Bytes+g.of(l.Bytes) {
		return TooBig
	}
	return Fits
}

// Crossed returns the percentages among thresholds (of the byte or message
// limit) that the change from before to after crossed upwards: each is
// crossed once, when usage goes from below it to at or above it, and not
// again until usage has fallen below it. Thresholds are returned in the
// order given.
func Crossed(l Limits, before, after Usage, thresholds []int) []int {
	var out []int
	for _, p := range thresholds {
		if crossed(l.Bytes, before.Bytes, after.Bytes, p) || crossed(l.Messages, before.Messages, after.Messages, p) {
			out = append(out, p)
		}
	}
	return out
}

func crossed(limit, before, after int64, percent int) bool {
	if limit <= 0 || percent <= 0 {
		return false
	}
	// at or above p% of limit, in integers: v*100 >= limit*p.
	at := func(v int64) bool { return v*100 >= limit*int64(percent) }
	return !at(before) && at(after)
}
