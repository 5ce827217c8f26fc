package protocol

import (
	"crypto/rand"
	"encoding/base32"
	"strconv"
	"sync"
	"sync/atomic"
)

// idEncoding is base32 without padding in lower case: ids stay short,
// case-insensitive and safe in file names and headers.
var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// SessionIDs makes session ids: a random prefix, drawn once per source so
// that ids are unique across process runs, followed by a counter. Every
// server of this module (SMTP/LMTP, policy, socketmap) names its sessions
// this way. The zero value is ready to use; it is safe for concurrent use.
type SessionIDs struct {
	once   sync.Once
	prefix string
	n      atomic.Uint64
}

// Next returns the next session id.
func (g *SessionIDs) Next() string {
	g.once.Do(func() {
		var b [5]byte
		rand.Read(b[:])
		g.prefix = idEncoding.EncodeToString(b[:])
	})
	return g.prefix + strconv.FormatUint(g.n.Add(1), 36)
}
