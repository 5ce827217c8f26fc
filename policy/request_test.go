package policy

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadRequest(t *testing.T) {
	small := Limits{MaxLineLength: 40, MaxAttributes: 4, MaxRequestBytes: 100}
	for _, tc := range []struct {
		name  string
		in    string
		lim   Limits
		want  map[string]string // attributes; nil when an error is expected
		err   error             // errors.Is target
		after string            // what is left unread after a good request
	}{
		{name: "minimal", in: "request=smtpd_access_policy\n\n",
			want: map[string]string{"request": "smtpd_access_policy"}},
		{name: "leaves the next request", in: "request=x\nrecipient=a@b\n\nrequest=y\n\n",
			want: map[string]string{"request": "x", "recipient": "a@b"}, after: "request=y\n\n"},
		{name: "value with equals", in: "request=x\nk=a=b\n\n",
			want: map[string]string{"request": "x", "k": "a=b"}},
		{name: "empty value", in: "request=x\nsender=\n\n",
			want: map[string]string{"request": "x", "sender": ""}},
		{name: "first value wins", in: "request=x\nrecipient=1\nrecipient=2\n\n",
			want: map[string]string{"request": "x", "recipient": "1"}},
		{name: "crlf", in: "request=x\r\nk=v\r\n\r\n",
			want: map[string]string{"request": "x", "k": "v"}},
		{name: "cr inside a value is kept", in: "request=x\nk=a\rb\n\n",
			want: map[string]string{"request": "x", "k": "a\rb"}},
		{name: "utf8 and 8-bit values", in: "request=x\nsender=j\xc3\xb6rg@example.org\nk=\xff\n\n",
			want: map[string]string{"request": "x", "sender": "jörg@example.org", "k": "\xff"}},
		{name: "space in name", in: "request=x\nmy name=v\n\n",
			want: map[string]string{"request": "x", "my name": "v"}},

		{name: "eof before a request", in: "", err: io.EOF},
		{name: "eof inside a line", in: "request=x", err: ErrTruncated},
		{name: "eof before the empty line", in: "request=x\n", err: ErrTruncated},
		{name: "no equals", in: "request=x\nrecipient\n\n", err: ErrMalformed},
		{name: "empty name", in: "request=x\n=v\n\n", err: ErrMalformed},
		{name: "nul in value", in: "request=x\nk=a\x00\n\n", err: ErrMalformed},
		{name: "nul in name", in: "request=x\nk\x00=a\n\n", err: ErrMalformed},
		{name: "no request attribute", in: "recipient=a@b\n\n", err: ErrMalformed},
		{name: "empty request attribute", in: "request=\n\n", err: ErrMalformed},
		{name: "only the empty line", in: "\n", err: ErrMalformed},
		{name: "bad size", in: "request=x\nsize=1e3\n\n", err: ErrMalformed},
		{name: "negative count", in: "request=x\nrecipient_count=-1\n\n", err: ErrMalformed},
		{name: "size overflows", in: "request=x\nsize=18446744073709551616\n\n", err: ErrMalformed},
		{name: "bad port", in: "request=x\nclient_port=0x19\n\n", err: ErrMalformed},
		{name: "line at the limit", lim: small, in: "request=x\nk=" + strings.Repeat("v", 37) + "\n\n",
			want: map[string]string{"request": "x", "k": strings.Repeat("v", 37)}},
		{name: "line over the limit", lim: small, in: "request=x\nk=" + strings.Repeat("v", 38) + "\n\n", err: ErrLineTooLong},
		{name: "attributes at the limit", lim: small, in: "request=x\na=1\nb=2\nc=3\n\n",
			want: map[string]string{"request": "x", "a": "1", "b": "2", "c": "3"}},
		{name: "attributes over the limit", lim: small, in: "request=x\na=1\nb=2\nc=3\nd=4\n\n", err: ErrTooManyAttributes},
		{name: "repeated names count", lim: small, in: "request=x\na=1\na=1\na=1\na=1\n\n", err: ErrTooManyAttributes},
		{name: "request over the limit", lim: small, in: "request=x\na=" + strings.Repeat("1", 35) + "\nb=" + strings.Repeat("2", 35) + "\nc=" + strings.Repeat("3", 20) + "\n\n", err: ErrRequestTooLarge},
		{name: "endless line", in: "request=x\nk=" + strings.Repeat("v", 100000), err: ErrLineTooLong},
	} {
		for _, mode := range []string{"whole", "onebyte", "dataerr"} {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				var r io.Reader = strings.NewReader(tc.in)
				switch mode {
				case "onebyte":
					r = iotest.OneByteReader(r)
				case "dataerr":
					r = iotest.DataErrReader(r)
				}
				lim := tc.lim.withDefaults()
				br := bufio.NewReaderSize(r, lim.MaxLineLength)
				req, err := ReadRequest(br, tc.lim)
				if tc.want == nil {
					if !errors.Is(err, tc.err) {
						t.Fatalf("err = %v, want %v", err, tc.err)
					}
					if tc.err != io.EOF && !errors.Is(err, ErrMalformed) {
						t.Errorf("err %v does not wrap ErrMalformed", err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if len(req.Attrs) != len(tc.want) {
					t.Errorf("attrs %q, want %q", req.Attrs, tc.want)
				}
				for k, v := range tc.want {
					if req.Attrs[k] != v {
						t.Errorf("attr %s = %q, want %q", k, req.Attrs[k], v)
					}
				}
				rest, _ := io.ReadAll(br)
				if string(rest) != tc.after {
					t.Errorf("left unread %q, want %q", rest, tc.after)
				}
			})
		}
	}
}

func TestRequestFields(t *testing.T) {
	in := strings.Join([]string{
		"request=smtpd_access_policy",
		"protocol_state=END-OF-MESSAGE",
		"protocol_name=ESMTP",
		"recipient_count=3",
		"size=18446744073709551615",
		"client_port=65535",
		"server_port=587",
		"encryption_keysize=0",
		"ccert_subject=J+C3+B6rg+20M+C3+BCller",
		"ccert_issuer=not+xtext+",
		"tls_sni=mx.example.org",
		"stress=yes",
		"policy_context=submission",
		"", ""}, "\n")
	req, err := ReadRequest(bufio.NewReader(strings.NewReader(in)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ got, want any }{
		{req.Request, "smtpd_access_policy"},
		{req.ProtocolState, "END-OF-MESSAGE"},
		{req.ProtocolName, "ESMTP"},
		{req.RecipientCount, uint64(3)},
		{req.Size, uint64(18446744073709551615)},
		{req.ClientPort, uint64(65535)},
		{req.ServerPort, uint64(587)},
		{req.EncryptionKeysize, uint64(0)},
		{req.CCertSubject, "Jörg Müller"},
		{req.CCertIssuer, "not+xtext+"},
		{req.Attrs["ccert_subject"], "J+C3+B6rg+20M+C3+BCller"},
		{req.TLSSNI, "mx.example.org"},
		{req.Stress, "yes"},
		{req.PolicyContext, "submission"},
		{req.Recipient, ""},
	} {
		if c.got != c.want {
			t.Errorf("got %#v, want %#v", c.got, c.want)
		}
	}
}

func TestXtextDecode(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"plain", "plain"},
		{"a+20b", "a b"},
		{"+2B", "+"},
		{"+3D+3d", "=="},
		{"end+", "end+"},
		{"end+2", "end+2"},
		{"bad+zz", "bad+zz"},
	} {
		if got := xtextDecode(tc.in); got != tc.want {
			t.Errorf("xtextDecode(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
