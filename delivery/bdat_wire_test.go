package delivery

import (
	"bufio"
	"context"
	"net"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/protocol"
)

// TestBDATSizeLimitWire drives the protocol server in front of the real
// router and maildir over real connections (LMTP on a unix socket, SMTP
// on loopback TCP) with BDAT chunks around the size limit (issue 19,
// defect 5): up to the limit the message is delivered; a chunk that takes
// it past the limit gets 552 5.3.4 (per recipient for LMTP LAST) once it
// has been read, while the announced total stays within the drain bound
// (limit + half); past the bound 552 5.3.4 (per recipient for LMTP LAST)
// without reading the chunk, then 421, and the connection closes.
// The session stays in sync (NOOP after), nothing of a refused message is
// left in new/ or tmp/, Shutdown returns at once and no goroutine is left.
func TestBDATSizeLimitWire(t *testing.T) {
	const limit = 64 << 10
	const bound = limit + limit/2
	cases := []struct {
		name   string
		chunks []int64
	}{
		{"under", []int64{limit - 1}},
		{"at limit", []int64{limit}},
		{"one over", []int64{limit + 1}},
		{"at bound", []int64{bound}},
		{"one over bound", []int64{bound + 1}},
		{"absurd", []int64{999999999999999999}},
		{"two chunks at limit", []int64{limit / 2, limit / 2}},
		{"second chunk over", []int64{limit / 2, limit/2 + 1}},
		{"second chunk at bound", []int64{limit, limit / 2}},
		{"second chunk over bound", []int64{limit, limit/2 + 1}},
		{"third chunk after full", []int64{limit, 0, 1}},
	}
	for _, p := range []struct {
		proto   protocol.Protocol
		network string
	}{{protocol.LMTP, "unix"}, {protocol.SMTP, "tcp"}} {
		for _, tc := range cases {
			t.Run(p.proto.String()+"/"+tc.name, func(t *testing.T) {
				base := runtime.NumGoroutine()
				root := t.TempDir()
				r := newRouter(t, testConfig(root), Options{})
				log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
				srv := &protocol.Server{Protocol: p.proto, Hostname: "mx.test", Backend: r, MaxMessageBytes: limit, Logger: &log}
				addr := "127.0.0.1:0"
				if p.network == "unix" {
					addr = filepath.Join(t.TempDir(), "lmtp.sock")
				}
				l, err := net.Listen(p.network, addr)
				if err != nil {
					t.Fatal(err)
				}
				served := make(chan error, 1)
				go func() { served <- srv.Serve(l) }()

				c, err := net.Dial(p.network, l.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				cl := &wireClient{t: t, c: c, br: bufio.NewReader(c)}
				cl.expect("220")
				hello := "EHLO"
				if p.proto == protocol.LMTP {
					hello = "LHLO"
				}
				cl.send(hello + " client.test")
				cl.expect("250")
				cl.send("MAIL FROM:<s@example.com>\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<Alice@example.org>")
				cl.expect("250 2.1.0")
				cl.expect("250 2.1.5")
				cl.expect("250 2.1.5")
				perRcpt := 1
				if p.proto == protocol.LMTP {
					perRcpt = 2
				}

				var total int64
				delivered, closed := false, false
				for i, n := range tc.chunks {
					last := i == len(tc.chunks)-1
					cmd := "BDAT " + strconv.FormatInt(n, 10)
					if last {
						cmd += " LAST"
					}
					total += n
					if total > bound {
						// Only the command: the server must not wait for
						// the bytes.
						cl.send(cmd)
						// The refusal is permanent (the message can never
						// fit), then the connection closes.
						for range perRcptIf(last, perRcpt) {
							cl.expect("552 5.3.4")
						}
						cl.expect("421 4.3.4")
						cl.expectClosed()
						closed = true
						break
					}
					cl.sendAsync(cmd+"\r\n", chunkText(total-n, n))
					switch {
					case total > limit:
						for range perRcptIf(last, perRcpt) {
							cl.expect("552 5.3.4")
						}
					case !last:
						cl.expect("250 2.0.0 " + strconv.FormatInt(n, 10) + " octets received")
						continue
					default:
						for range perRcpt {
							cl.expect("250 2.0.0")
						}
						delivered = true
					}
					break
				}
				if !closed {
					cl.send("NOOP")
					cl.expect("250 2.0.0 OK")
					cl.send("QUIT")
					cl.expect("221")
				}

				want := 0
				if delivered {
					want = 1
				}
				for _, box := range []string{"example.org/bob", "example.org/Alice"} {
					// maildirFiles also fails on anything left in tmp/.
					if got := maildirFiles(t, root, box); len(got) != want {
						t.Errorf("%s: %d messages in new/, want %d", box, len(got), want)
					} else if want == 1 && int64(len(got[0])) < limit/2 {
						t.Errorf("%s: stored %d bytes", box, len(got[0]))
					}
				}

				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				c.Close()
				if err := srv.Shutdown(ctx); err != nil {
					t.Errorf("Shutdown: %v (a session is stuck)", err)
				}
				<-served
				r.Close()
				// Every goroutine the session started has returned.
				deadline := time.Now().Add(3 * time.Second)
				for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if n := runtime.NumGoroutine(); n > base {
					buf := make([]byte, 1<<20)
					t.Errorf("%d goroutines left over (%d before):\n%s", n-base, base, buf[:runtime.Stack(buf, true)])
				}
			})
		}
	}
}

// perRcptIf is the number of replies to a failed chunk: one per recipient
// for an LMTP LAST, else one.
func perRcptIf(last bool, perRcpt int) int {
	if last {
		return perRcpt
	}
	return 1
}

// chunkText returns n bytes of message text that starts at offset off of
// the message: a header, then lines of 71 characters, CRLF-terminated, so
// that only the size limit can refuse it. (The sizes tested never cut a
// message between a CR and its LF: a CR ending the message is bare.)
func chunkText(off, n int64) string {
	const head = "Subject: bdat\r\n\r\n"
	line := strings.Repeat("x", 71) + "\r\n"
	var b strings.Builder
	b.WriteString(head)
	for int64(b.Len()) < off+n {
		b.WriteString(line)
	}
	return b.String()[off : off+n]
}

// sendAsync writes a command and its chunk without waiting: the server
// may answer (and close) before it has read everything.
func (w *wireClient) sendAsync(cmd, data string) {
	go func() {
		w.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		w.c.Write([]byte(cmd + data))
	}()
}

func (w *wireClient) expectClosed() {
	w.t.Helper()
	w.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := w.br.ReadString('\n'); err == nil {
		w.t.Fatalf("want the connection closed, got %q", line)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		w.t.Fatalf("connection still open: %v", err)
	}
}
