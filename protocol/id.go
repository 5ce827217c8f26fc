package protocol

import (
	"crypto/rand"
	"encoding/base32"
	"strconv"
)

// idEncoding is base32 without padding in lower case: ids stay short,
// case-insensitive and safe in file names and headers.
var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// newIDPrefix returns a random prefix that makes ids unique across
// process runs.
func newIDPrefix() string {
	var b [5]byte
	rand.Read(b[:])
	return idEncoding.EncodeToString(b[:])
}

// newSessionID returns the next session id: the server's random prefix
// and a per-server counter.
func (s *Server) newSessionID() string {
	n := s.nextID.Add(1)
	return s.idPrefix + strconv.FormatUint(n, 36)
}
