package maildir

import (
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// NameSource yields unique maildir base names. Implementations must be
// safe for concurrent use. The Store appends ",S=<size>" for the name in
// new/.
type NameSource interface {
	// Next returns a name unique within this host for a delivery at now.
	// It must not contain "/" or ":" (the info separator) and must not
	// start with ".".
	Next(now time.Time) string
}

// UniqueNames is the default NameSource:
// <sec>.M<usec>P<pid>Q<counter>.<host>, the maildir specification's
// recommended form, where the counter counts deliveries of this process.
type UniqueNames struct {
	pid  string
	host string
	q    atomic.Uint64
}

// NewUniqueNames returns a NameSource for the given host name (os.Hostname
// when empty) and this process's id.
func NewUniqueNames(host string) *UniqueNames {
	if host == "" {
		host, _ = os.Hostname()
		if host == "" {
			host = "localhost"
		}
	}
	return &UniqueNames{pid: strconv.Itoa(os.Getpid()), host: EscapeHost(host)}
}

// Next implements NameSource.
func (u *UniqueNames) Next(now time.Time) string {
	q := u.q.Add(1)
	b := make([]byte, 0, 64)
	b = strconv.AppendInt(b, now.Unix(), 10)
	b = append(b, ".M"...)
	b = strconv.AppendInt(b, int64(now.Nanosecond()/1000), 10)
	b = append(b, 'P')
	b = append(b, u.pid...)
	b = append(b, 'Q')
	b = strconv.AppendUint(b, q, 10)
	b = append(b, '.')
	b = append(b, u.host...)
	return string(b)
}

// EscapeHost writes "/" as \057 and ":" as \072, as the maildir
// specification asks of host names in file names; a backslash is written
// as \134 so the escape stays unambiguous.
func EscapeHost(h string) string {
	if !strings.ContainsAny(h, "/:\\") {
		return h
	}
	var b strings.Builder
	for i := 0; i < len(h); i++ {
		switch h[i] {
		case '/':
			b.WriteString(`\057`)
		case ':':
			b.WriteString(`\072`)
		case '\\':
			b.WriteString(`\134`)
		default:
			b.WriteByte(h[i])
		}
	}
	return b.String()
}
