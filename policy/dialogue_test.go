package policy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Dialogue files (testdata/dialogues/*.txt) script a connection:
//
//	# comment
//	@opt maxline=64           server settings (see applyOpt)
//	@erroraction TEXT         Server.ErrorAction
//	@transports pipe,unix     where to run (default pipe, unix and a
//	                          byte-at-a-time pipe)
//	C: name=value             the client sends the line and "\n"
//	C:                        the client sends an empty line
//	C! "go quoted"            the client sends raw bytes
//	S: text                   the next server line is exactly text
//	                          ("S:" alone: an empty line)
//	S~ regexp                 the next server line matches regexp entirely
//	CLOSED                    the server closes the connection, sending
//	                          nothing more
//	Q: name=value             the last request the handler got has this
//	                          value (typed field for known names, else
//	                          the raw attribute)
//	N: n                      the handler was called n times so far
//
// Consecutive C lines go out in one write. On failure the transcript is
// printed.

type step struct {
	kind, arg string
	line      int
}

type dialogue struct {
	opts        []string
	errorAction string
	transports  []string
	steps       []step
}

func parseDialogue(t *testing.T, path string) *dialogue {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := &dialogue{transports: []string{"pipe", "unix", "bytewise"}}
	for i, l := range strings.Split(string(data), "\n") {
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "@opt "):
			d.opts = append(d.opts, strings.Fields(l[5:])...)
		case strings.HasPrefix(l, "@erroraction "):
			d.errorAction = l[len("@erroraction "):]
		case strings.HasPrefix(l, "@transports "):
			d.transports = strings.Split(strings.TrimSpace(l[12:]), ",")
		case l == "C:" || l == "S:" || l == "CLOSED":
			d.steps = append(d.steps, step{l, "", i + 1})
		case len(l) >= 3 && l[2] == ' ':
			kind, arg := l[:2], l[3:]
			switch kind {
			case "C:", "S:", "S~", "Q:", "N:":
			case "C!":
				u, err := strconv.Unquote(arg)
				if err != nil {
					t.Fatalf("%s:%d: %v", path, i+1, err)
				}
				arg = u
			default:
				t.Fatalf("%s:%d: unknown step %q", path, i+1, l)
			}
			d.steps = append(d.steps, step{kind, arg, i + 1})
		default:
			t.Fatalf("%s:%d: cannot parse %q", path, i+1, l)
		}
	}
	return d
}

func applyOpt(t *testing.T, s *Server, opt string) {
	k, v, _ := strings.Cut(opt, "=")
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("@opt %q: %v", opt, err)
	}
	switch k {
	case "maxline":
		s.MaxLineLength = n
	case "maxattrs":
		s.MaxAttributes = n
	case "maxrequest":
		s.MaxRequestBytes = n
	case "idletimeout":
		s.IdleTimeout = time.Duration(n) * time.Millisecond
	case "readtimeout":
		s.ReadTimeout = time.Duration(n) * time.Millisecond
	case "handlertimeout":
		s.HandlerTimeout = time.Duration(n) * time.Millisecond
	default:
		t.Fatalf("unknown @opt %q", opt)
	}
}

func TestDialogues(t *testing.T) {
	files, err := filepath.Glob("testdata/dialogues/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dialogues: %v", err)
	}
	for _, f := range files {
		d := parseDialogue(t, f)
		for _, tr := range d.transports {
			t.Run(strings.TrimSuffix(filepath.Base(f), ".txt")+"/"+tr, func(t *testing.T) {
				t.Parallel()
				runDialogue(t, d, tr)
			})
		}
	}
}

// startServer serves h on the transport and returns a connected client.
func startServer(t *testing.T, s *Server, transport string) net.Conn {
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
			network, addr = "unix", filepath.Join(t.TempDir(), "policy.sock")
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

func runDialogue(t *testing.T, d *dialogue, transport string) {
	h := newFakeHandler()
	log, _ := testLogger(t)
	s := &Server{Handler: h, Logger: log, ErrorAction: Action(d.errorAction)}
	for _, o := range d.opts {
		applyOpt(t, s, o)
	}
	client := startServer(t, s, transport)
	br := bufio.NewReader(client)
	var transcript strings.Builder
	fail := func(st step, format string, args ...any) {
		t.Helper()
		t.Fatalf("line %d: %s\ntranscript:\n%s", st.line, fmt.Sprintf(format, args...), transcript.String())
	}

	// Writes run in a goroutine so that a server that stops reading (or
	// net.Pipe's synchronous writes) cannot block the script; they stay in
	// order.
	writeDone := make(chan struct{})
	close(writeDone)
	var batch []byte
	flush := func() {
		if len(batch) == 0 {
			return
		}
		data, prev, done := batch, writeDone, make(chan struct{})
		batch, writeDone = nil, done
		go func() {
			defer close(done)
			<-prev
			client.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if transport == "bytewise" {
				for i := range data {
					if _, err := client.Write(data[i : i+1]); err != nil {
						return
					}
				}
				return
			}
			client.Write(data)
		}()
	}
	readLine := func(st step) (string, bool) {
		client.SetReadDeadline(time.Now().Add(5 * time.Second))
		l, err := br.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) && l == "" {
				return "", false
			}
			fail(st, "reading the reply: %v (got %q)", err, l)
		}
		if strings.HasSuffix(l, "\r\n") {
			fail(st, "reply line ends in CRLF, Postfix expects LF: %q", l)
		}
		l = strings.TrimSuffix(l, "\n")
		transcript.WriteString("S: " + l + "\n")
		return l, true
	}
	for _, st := range d.steps {
		switch st.kind {
		case "C:":
			batch = append(batch, st.arg+"\n"...)
			transcript.WriteString("C: " + st.arg + "\n")
			continue
		case "C!":
			batch = append(batch, st.arg...)
			transcript.WriteString("C! " + strconv.Quote(st.arg) + "\n")
			continue
		}
		flush()
		switch st.kind {
		case "S:":
			if l, ok := readLine(st); !ok || l != st.arg {
				fail(st, "want %q, got %q (open=%v)", st.arg, l, ok)
			}
		case "S~":
			re := regexp.MustCompile("^(?:" + st.arg + ")$")
			if l, ok := readLine(st); !ok || !re.MatchString(l) {
				fail(st, "want /%s/, got %q (open=%v)", st.arg, l, ok)
			}
		case "CLOSED":
			client.SetReadDeadline(time.Now().Add(5 * time.Second))
			rest, err := io.ReadAll(br)
			if len(rest) != 0 || (err != nil && !isClosedErr(err)) {
				fail(st, "want the connection closed, got %q, %v", rest, err)
			}
			transcript.WriteString("CLOSED\n")
		case "Q:":
			name, want, _ := strings.Cut(st.arg, "=")
			r := h.last()
			if r == nil {
				fail(st, "the handler got no request")
			}
			if got := fieldValue(r, name); got != want {
				fail(st, "request %s = %q, want %q (attrs %q)", name, got, want, r.Attrs)
			}
		case "N:":
			n, _ := strconv.Atoi(st.arg)
			if got := h.calls(); got != n {
				fail(st, "handler called %d times, want %d", got, n)
			}
		}
	}
	flush()
}

// isClosedErr: reading from a connection the server closed ends with EOF,
// or with ECONNRESET when it closed with our bytes unread.
func isClosedErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "connection reset")
}

// fieldValue returns a request's typed field for a well-known attribute
// name (numbers in decimal, xtext decoded), else the raw attribute.
func fieldValue(r *Request, name string) string {
	num := func(n uint64) string { return strconv.FormatUint(n, 10) }
	switch name {
	case "request":
		return r.Request
	case "protocol_state":
		return r.ProtocolState
	case "protocol_name":
		return r.ProtocolName
	case "helo_name":
		return r.HeloName
	case "queue_id":
		return r.QueueID
	case "sender":
		return r.Sender
	case "recipient":
		return r.Recipient
	case "recipient_count":
		return num(r.RecipientCount)
	case "client_address":
		return r.ClientAddress
	case "client_name":
		return r.ClientName
	case "reverse_client_name":
		return r.ReverseClientName
	case "client_port":
		return num(r.ClientPort)
	case "server_address":
		return r.ServerAddress
	case "server_port":
		return num(r.ServerPort)
	case "instance":
		return r.Instance
	case "size":
		return num(r.Size)
	case "sasl_method":
		return r.SASLMethod
	case "sasl_username":
		return r.SASLUsername
	case "sasl_sender":
		return r.SASLSender
	case "ccert_subject":
		return r.CCertSubject
	case "ccert_issuer":
		return r.CCertIssuer
	case "ccert_fingerprint":
		return r.CCertFingerprint
	case "ccert_pubkey_fingerprint":
		return r.CCertPubkeyFingerprint
	case "encryption_protocol":
		return r.EncryptionProtocol
	case "encryption_cipher":
		return r.EncryptionCipher
	case "encryption_keysize":
		return num(r.EncryptionKeysize)
	case "tls_sni":
		return r.TLSSNI
	case "etrn_domain":
		return r.ETRNDomain
	case "stress":
		return r.Stress
	case "policy_context":
		return r.PolicyContext
	case "compatibility_level":
		return r.CompatibilityLevel
	case "mail_version":
		return r.MailVersion
	case "#attrs":
		return strconv.Itoa(len(r.Attrs))
	}
	return r.Attrs[name]
}
