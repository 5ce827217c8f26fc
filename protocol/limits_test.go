package protocol

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// lineCounter is a log writer that counts lines containing each pattern.
type lineCounter struct {
	mu     sync.Mutex
	counts map[string]int
	last   map[string]string
}

func newLineCounter() *lineCounter {
	return &lineCounter{counts: map[string]int{}, last: map[string]string{}}
}

func (w *lineCounter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range []string{`"recipient rejected"`, `"recipients rejected in this transaction"`, `"too many errors"`} {
		if bytes.Contains(p, []byte(k)) {
			w.counts[k]++
			w.last[k] = string(p)
		}
	}
	return len(p), nil
}

func (w *lineCounter) get(k string) (int, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.counts[k], w.last[k]
}

func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestRefusedRecipientsLoad (issue 19, defect 2): 50,000 RCPTs to a
// refused address after MAIL, over a loopback TCP connection, with the
// error budget set to 50,000 and no per-transaction cap so that every one
// reaches the backend. The heap must not grow with the count (nothing is
// kept per refused recipient), the 50,000th refusal is followed by 421
// 4.7.0 and the close, and the log holds a bounded number of lines.
func TestRefusedRecipientsLoad(t *testing.T) {
	const total = 50000
	const checkpoint = 10000
	logs := newLineCounter()
	log := zerolog.New(logs).Level(zerolog.InfoLevel)
	s := &Server{
		Hostname:             "mx.test",
		Backend:              newFakeBackend(),
		Logger:               &log,
		MaxErrors:            total,
		MaxRefusedRecipients: -1,
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	defer s.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(c)
	bw := bufio.NewWriter(c)
	readReply := func() string {
		t.Helper()
		var last string
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("reading reply: %v (last %q)", err, last)
			}
			last = l
			if len(l) < 4 || l[3] != '-' {
				return strings.TrimRight(l, "\r\n")
			}
		}
	}
	readReply() // greeting
	fmt.Fprintf(bw, "EHLO client.test\r\nMAIL FROM:<a@example.org>\r\n")
	bw.Flush()
	readReply()
	if r := readReply(); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("MAIL: %q", r)
	}

	// send writes RCPTs from..to-1 in batches and reads their replies.
	send := func(from, to int) {
		t.Helper()
		const batch = 500
		for i := from; i < to; i += batch {
			n := min(batch, to-i)
			for j := range n {
				fmt.Fprintf(bw, "RCPT TO:<unknown%d@nodomain.test>\r\n", i+j)
			}
			if err := bw.Flush(); err != nil {
				t.Fatal(err)
			}
			for range n {
				if r := readReply(); r != "550 5.1.1 No such user" {
					t.Fatalf("RCPT %d: %q", i, r)
				}
			}
		}
	}
	send(0, checkpoint)
	before := heapAlloc()
	send(checkpoint, total)
	after := heapAlloc()

	// Keeping a Recipient per refusal (as before the fix: about 120 bytes
	// each, 5 MB for these 40,000) exceeds this by far.
	const slack = 1 << 20
	t.Logf("heap after %d refusals: %d bytes; after %d: %d bytes", checkpoint, before, total, after)
	if after > before+slack {
		t.Errorf("heap grew by %d bytes over %d refused RCPTs", after-before, total-checkpoint)
	}

	// The budget is spent with the last refusal: 421, then the close.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if r := readReply(); !strings.HasPrefix(r, "421 4.7.0 ") {
		t.Fatalf("after %d refusals: %q, want 421 4.7.0", total, r)
	}
	if b, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection still open after 421: %q, %v", b, err)
	}
	// The session ends (summary line) once the server has closed it.
	s.Close()
	if n, _ := logs.get(`"recipient rejected"`); n != refusalLogLines {
		t.Errorf("%d refusals logged one by one, want %d", n, refusalLogLines)
	}
	n, line := logs.get(`"recipients rejected in this transaction"`)
	if n != 1 || !strings.Contains(line, fmt.Sprintf(`"refused":%d`, total)) {
		t.Errorf("summary lines: %d, last %q", n, line)
	}
}
