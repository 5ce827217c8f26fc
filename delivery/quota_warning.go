package delivery

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/lmtpd/lmtpd/quota"
)

// warningVars are the values of a warning's placeholders.
type warningVars struct {
	addr    string
	usage   quota.Usage
	limits  quota.Limits
	percent int
}

// warningMessage returns the warning to store (LF line endings): tmpl with
// its placeholders replaced, and Date and Message-ID fields added on top
// when the header has none.
func warningMessage(tmpl []byte, v warningVars, now time.Time) []byte {
	limit, msgLimit := "unlimited", "unlimited"
	if v.limits.Bytes > 0 {
		limit = humanBytes(v.limits.Bytes)
	}
	if v.limits.Messages > 0 {
		msgLimit = strconv.FormatInt(v.limits.Messages, 10)
	}
	// The address lands in header fields: no line breaks.
	text := strings.NewReplacer(
		"{user}", headerValue(v.addr),
		"{usage}", humanBytes(v.usage.Bytes),
		"{limit}", limit,
		"{messages}", strconv.FormatInt(v.usage.Messages, 10),
		"{message_limit}", msgLimit,
		"{percent}", strconv.Itoa(v.percent),
	).Replace(string(tmpl))
	text = strings.ReplaceAll(text, "\r\n", "\n")
	header := text
	if first, _, _ := strings.Cut(text, "\n"); !isField(first) {
		// No header at all: the text is the body.
		header, text = "", "\n"+text
	} else if i := strings.Index(text, "\n\n"); i >= 0 {
		header = text[:i+1]
	}
	var top bytes.Buffer
	if !hasField(header, "Date") {
		top.WriteString("Date: " + now.Format(time.RFC1123Z) + "\n")
	}
	if !hasField(header, "Message-ID") {
		var b [12]byte
		rand.Read(b[:])
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "localhost"
		}
		fmt.Fprintf(&top, "Message-ID: <quota.%s@%s>\n", hex.EncodeToString(b[:]), headerValue(host))
	}
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	return append(top.Bytes(), text...)
}

// isField reports whether line starts a header field: a name of printable
// ASCII other than ':' and space, then ':' (RFC 5322 section 2.2).
func isField(line string) bool {
	name, _, ok := strings.Cut(line, ":")
	if !ok || name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] <= ' ' || name[i] > '~' {
			return false
		}
	}
	return true
}

// hasField reports whether header (LF lines) has a field called name.
func hasField(header, name string) bool {
	for line := range strings.SplitSeq(header, "\n") {
		if k, _, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return true
		}
	}
	return false
}

// humanBytes formats n bytes with a binary unit: "512 B", "12.5 MiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return strconv.FormatFloat(float64(n)/float64(div), 'f', 1, 64) + " " + "KMGTP"[exp:exp+1] + "iB"
}
