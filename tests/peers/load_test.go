//go:build linux

package peers

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// loadMsg is a message of the load test, generated on the fly from a seed
// so that 1 GiB of large messages never sits in memory: one pass computes
// the body digest for the header, a second streams the message.
type loadMsg struct {
	id   string
	rcpt string
	size int
	seed uint64
}

// body writes the body: lines of 74 hex digits from a PRNG seeded by
// m.seed, ending in eol, about m.size bytes in total (LF counted). No line
// starts with a dot, so the stream needs no dot-stuffing.
func (m loadMsg) body(w io.Writer, eol string) error {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], m.seed)
	src := rand.NewChaCha8(seed)
	raw := make([]byte, 37*256)
	line := make([]byte, 0, (74+len(eol))*256)
	for n := 0; n < m.size; {
		src.Read(raw)
		line = line[:0]
		for i := 0; i < 256 && n < m.size; i++ {
			line = hex.AppendEncode(line, raw[i*37:(i+1)*37])
			line = append(line, eol...)
			n += 75
		}
		if _, err := w.Write(line); err != nil {
			return err
		}
	}
	return nil
}

// digest returns the SHA-256 of the body as stored (LF line endings).
func (m loadMsg) digest() string {
	h := sha256.New()
	m.body(h, "\n")
	return hex.EncodeToString(h.Sum(nil))
}

// write streams the whole message in wire form with the terminating dot.
func (m loadMsg) write(w io.Writer, digest string) error {
	_, err := fmt.Fprintf(w, "From: <load@example.test>\r\nTo: <%s>\r\nSubject: load %s\r\nMessage-ID: <%s@load.example.test>\r\nX-Test-ID: %s\r\n%s: %s\r\n\r\n",
		m.rcpt, m.id, m.id, m.id, digestHeader, digest)
	if err != nil {
		return err
	}
	if err := m.body(w, "\r\n"); err != nil {
		return err
	}
	_, err = io.WriteString(w, ".\r\n")
	return err
}

// loadClient sends its messages over one LMTP session, one transaction
// after another as Postfix does on a cached connection.
func loadClient(network, addr string, msgs []loadMsg, onSent func(loadMsg, time.Duration)) error {
	c, err := tryDialWire(network, addr, 30*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.timeout = 5 * time.Minute // the final reply of a 10 MiB message waits for fsync
	cmd := func(line string, code int) error {
		if err := c.write(line); err != nil {
			return err
		}
		r, err := c.readReply()
		if err != nil {
			return fmt.Errorf("%q: %w", line, err)
		}
		if r.Code != code {
			return fmt.Errorf("%q: %v", line, r)
		}
		return nil
	}
	if err := cmd("LHLO load.example.test\r\n", 250); err != nil {
		return err
	}
	bw := bufio.NewWriterSize(c.conn, 64<<10)
	for _, m := range msgs {
		start := time.Now()
		dg := m.digest()
		if err := cmd("MAIL FROM:<load@example.test>\r\n", 250); err != nil {
			return fmt.Errorf("%s: %w", m.id, err)
		}
		if err := cmd("RCPT TO:<"+m.rcpt+">\r\n", 250); err != nil {
			return fmt.Errorf("%s: %w", m.id, err)
		}
		if err := cmd("DATA\r\n", 354); err != nil {
			return fmt.Errorf("%s: %w", m.id, err)
		}
		c.conn.SetWriteDeadline(time.Now().Add(c.timeout))
		if err := m.write(bw, dg); err != nil {
			return fmt.Errorf("%s: %w", m.id, err)
		}
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("%s: %w", m.id, err)
		}
		r, err := c.readReply()
		if err != nil {
			return fmt.Errorf("%s: %w", m.id, err)
		}
		if r.Code != 250 {
			return fmt.Errorf("%s: %v", m.id, r)
		}
		onSent(m, time.Since(start))
	}
	return cmd("QUIT\r\n", 221)
}

// TestLoad sends 20,000 small messages and 100 of 10 MiB from 50
// concurrent LMTP clients into maildirs (each file fsynced before its
// 250). Every message must be in new/ exactly once with its digest
// intact. It reports throughput and lmtpd's peak RSS.
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("the load test takes a while; it runs without -short")
	}
	const (
		clients = 50
		small   = 20_000
		large   = 100
		users   = 50
	)
	d := newDaemon(t, daemonOptions{})

	// Each client gets every 50th small message, and two large ones placed
	// at different points of its run.
	per := make([][]loadMsg, clients)
	seed := rand.Uint64()
	for i := range small {
		per[i%clients] = append(per[i%clients], loadMsg{
			id: fmt.Sprintf("s%05d", i), rcpt: fmt.Sprintf("u%02d@example.test", i%users),
			size: 500 + int((seed+uint64(i)*7919)%3500), seed: seed + uint64(i),
		})
	}
	for i := range large {
		k := i % clients
		m := loadMsg{id: fmt.Sprintf("L%03d", i), rcpt: fmt.Sprintf("u%02d@example.test", (i*7)%users), size: 10 << 20, seed: seed ^ uint64(i+1)<<32}
		at := (len(per[k]) * (1 + 2*(i/clients)) / 4) % (len(per[k]) + 1)
		per[k] = append(per[k][:at], append([]loadMsg{m}, per[k][at:]...)...)
	}

	var (
		sent, bytesSent    atomic.Int64
		mu                 sync.Mutex
		errs               []error
		slowSmall, slowBig time.Duration
		maxRSS             int64
	)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if rss, err := readRSS(d.Pid()); err == nil {
				maxRSS = max(maxRSS, rss)
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	for k := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			network, addr := "unix", d.Socket
			if k%2 == 1 {
				network, addr = "tcp", d.LMTPAddr
			}
			err := loadClient(network, addr, per[k], func(m loadMsg, el time.Duration) {
				sent.Add(1)
				bytesSent.Add(int64(m.size))
				mu.Lock()
				if m.size > 1<<20 {
					slowBig = max(slowBig, el)
				} else {
					slowSmall = max(slowSmall, el)
				}
				mu.Unlock()
			})
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("client %d: %w", k, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stop)
	<-sampled
	_, hwm := d.memory()
	for _, err := range errs {
		t.Error(err)
	}

	// Exactly once, whole.
	vstart := time.Now()
	seen := make(map[string]int, small+large)
	files := 0
	for u := range users {
		for _, f := range newFiles(t, filepath.Join(d.Maildir, "example.test", fmt.Sprintf("u%02d", u))) {
			files++
			id, err := verifyFile(f)
			if err != nil {
				t.Errorf("%s: %v", f, err)
				continue
			}
			seen[id]++
		}
	}
	missing, dup := 0, 0
	for k := range per {
		for _, m := range per[k] {
			switch seen[m.id] {
			case 0:
				missing++
			case 1:
			default:
				dup++
			}
		}
	}
	if missing > 0 || dup > 0 || files != small+large {
		t.Errorf("%d files for %d messages: %d missing, %d more than once", files, small+large, missing, dup)
	}
	n := sent.Load()
	mib := float64(bytesSent.Load()) / (1 << 20)
	t.Logf("%d messages (%.0f MiB) from %d clients in %v: %.0f messages/s, %.1f MiB/s; slowest small %v, slowest 10 MiB %v; verified in %v",
		n, mib, clients, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), mib/elapsed.Seconds(),
		slowSmall.Round(time.Millisecond), slowBig.Round(time.Millisecond), time.Since(vstart).Round(time.Millisecond))
	t.Logf("lmtpd peak RSS: VmHWM %d KiB, max sampled VmRSS %d KiB", hwm, maxRSS)
	if limit := rssLimitKiB(); hwm > limit {
		t.Errorf("lmtpd's peak RSS %d KiB is above %d KiB", hwm, limit)
	}
}

// verifyFile checks a maildir file's body against its digest header while
// streaming it, and returns its X-Test-ID.
func verifyFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	var id, want string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return id, fmt.Errorf("header: %w", err)
		}
		if line == "\n" {
			break
		}
		switch fieldName(line) {
		case "x-test-id":
			id = trimField(line)
		case "x-body-sha256":
			want = trimField(line)
		}
	}
	var h hash.Hash = sha256.New()
	if _, err := io.Copy(h, br); err != nil {
		return id, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want || id == "" {
		return id, fmt.Errorf("message %q: body digest %s, header says %s", id, got, want)
	}
	return id, nil
}

// trimField returns the value of a one-line header field.
func trimField(line string) string {
	_, v, _ := strings.Cut(line, ":")
	return strings.TrimSpace(v)
}
