package wiretest

import (
	"bytes"
	"sync"
	"testing"

	"github.com/rs/zerolog"
)

// LogBuffer collects log output; it is safe for the server's goroutines.
// Its zero value is ready to use.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Logger returns a logger at trace level that writes to t.Log and to the
// returned buffer.
func Logger(t testing.TB) (*zerolog.Logger, *LogBuffer) {
	buf := &LogBuffer{}
	l := zerolog.New(zerolog.MultiLevelWriter(zerolog.NewTestWriter(t), buf)).Level(zerolog.TraceLevel)
	return &l, buf
}
