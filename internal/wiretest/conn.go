package wiretest

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Server is what Connect serves on: protocol.Server, policy.Server and
// socketmap.Server have these methods.
type Server interface {
	Serve(l net.Listener) error
	ServeConn(c net.Conn)
	Close() error
}

// Connect serves s over transport ("pipe", "bytewise", "unix" or "tcp",
// see the package doc) and returns a connected client; the client and s
// are closed when the test ends.
func Connect(t testing.TB, s Server, transport string) net.Conn {
	t.Helper()
	var client net.Conn
	switch transport {
	case "pipe", "bytewise":
		c1, c2 := net.Pipe()
		s.ServeConn(c1)
		client = c2
	case "unix", "tcp":
		network, addr := "tcp", "127.0.0.1:0"
		if transport == "unix" {
			network, addr = "unix", filepath.Join(t.TempDir(), "s.sock")
		}
		l, err := net.Listen(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		go s.Serve(l)
		client, err = net.Dial(network, l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("unknown transport %q", transport)
	}
	t.Cleanup(func() {
		client.Close()
		s.Close()
	})
	return client
}

// ExpectClosed checks that the server closes c without sending anything
// more than br holds: nothing is left to read, and the read ends as
// IsClosed says, within 5 s.
func ExpectClosed(t testing.TB, c net.Conn, br *bufio.Reader) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(br)
	if len(rest) != 0 || err != nil && !IsClosed(err) {
		t.Fatalf("want the connection closed, got %q, %v", rest, err)
	}
}

// Feed serves one connection with serve (a Server's ServeConn) that reads
// input, then io.EOF, and returns what the server wrote to it once the
// server closed it; a server that does not close it within 5 s fails the
// test. Deadlines are ignored. It is for fuzz targets that feed a whole
// session at once.
func Feed(t testing.TB, serve func(net.Conn), input []byte) []byte {
	t.Helper()
	c := &scriptConn{in: bytes.NewReader(input), closed: make(chan struct{})}
	serve(c)
	select {
	case <-c.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not close the connection at the end of its input")
	}
	return c.out.Bytes()
}

// scriptConn is a net.Conn that reads a fixed input, then io.EOF, and
// records what is written to it.
type scriptConn struct {
	in     *bytes.Reader
	out    bytes.Buffer
	once   sync.Once
	closed chan struct{}
}

func (c *scriptConn) Read(p []byte) (int, error)  { return c.in.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error) { return c.out.Write(p) }
func (c *scriptConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}
func (c *scriptConn) LocalAddr() net.Addr              { return &net.UnixAddr{Name: "fuzz", Net: "unix"} }
func (c *scriptConn) RemoteAddr() net.Addr             { return &net.UnixAddr{Name: "", Net: "unix"} }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// FreePorts returns n loopback TCP addresses ("127.0.0.1:port") whose
// ports were free a moment ago, all different: each is held until all
// are chosen, since a port just closed may be handed out again at once.
// Whoever binds them later may still lose one to another process.
func FreePorts(t testing.TB, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		addrs[i] = l.Addr().String()
	}
	return addrs
}
