package policy

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/internal/wiretest"
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
// printed. internal/wiretest parses and plays the files; the Q and N steps
// are this package's.

// dialogueSyntax is what policy's dialogue files add to wiretest's.
var dialogueSyntax = wiretest.Syntax{
	Kinds:      []string{"Q:", "N:"},
	Directives: []string{"erroraction"},
	Transports: []string{"pipe", "unix", "bytewise"},
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
	wiretest.RunFiles(t, "testdata/dialogues/*.txt", dialogueSyntax, runDialogue)
}

func runDialogue(t *testing.T, d *wiretest.Script, transport string) {
	h := newFakeHandler()
	log, _ := wiretest.Logger(t)
	s := &Server{Handler: h, Logger: log, ErrorAction: Action(d.Directives["erroraction"])}
	for _, o := range d.Opts {
		applyOpt(t, s, o)
	}
	client := wiretest.Connect(t, s, transport)
	d.Play(t, client, transport, wiretest.LFLines, map[string]wiretest.Hook{
		"Q:": func(r *wiretest.Runner, st wiretest.Step) {
			name, want, _ := strings.Cut(st.Arg, "=")
			q := h.last()
			if q == nil {
				r.Fail(st, "the handler got no request")
			}
			if got := fieldValue(q, name); got != want {
				r.Fail(st, "request %s = %q, want %q (attrs %q)", name, got, want, q.Attrs)
			}
		},
		"N:": func(r *wiretest.Runner, st wiretest.Step) {
			n, _ := strconv.Atoi(st.Arg)
			if got := h.calls(); got != n {
				r.Fail(st, "handler called %d times, want %d", got, n)
			}
		},
	})
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
