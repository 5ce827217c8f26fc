package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

// Fuzz targets for the wire parsers. `go test` runs their seeds (the f.Add
// calls and testdata/fuzz/<name>/); `go test -fuzz=FuzzDataReader` and so
// on explore further.

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		"<user@example.com>", "<> SIZE=1", "<Postmaster>", "<@a.b,@c.d:u@e.f> X=1",
		`<"a\"b c"@x.org>`, "<a..b.@x.org>", "<用户@例子.广告>", "<a@[192.0.2.1]>",
		"<a@[IPv6:2001:db8::1]>", "<a@[tag:x]>", "<a@\xff>", "<a\r@b>", "<a@b",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, rcpt bool) {
		a, rest, err := parsePath(s, rcpt)
		if err != nil {
			e := AsError(err)
			want := ECPermBadSender
			if rcpt {
				want = ECPermBadDestSyntax
			}
			if e == nil || e.Code != CodeParamSyntax || e.EnhancedCode != want || !isPrintableText(e.Message) {
				t.Fatalf("parsePath(%q, %v) error %v", s, rcpt, err)
			}
			return
		}
		if !strings.HasSuffix(s, rest) || len(rest) > len(s)-2 {
			t.Fatalf("rest %q is not a suffix of %q", rest, s)
		}
		path := s[:len(s)-len(rest)]
		if path[0] != '<' || path[len(path)-1] != '>' || len(path)-2 > maxPathLen {
			t.Fatalf("path %q of %q", path, s)
		}
		if strings.ContainsAny(s, "\r\n\x00") {
			t.Fatalf("accepted CR, LF or NUL in %q", s)
		}
		if !utf8.ValidString(a.LocalPart) || !utf8.ValidString(a.Domain) ||
			!strings.Contains(path, a.LocalPart) || !strings.Contains(path, a.Domain) {
			t.Fatalf("parts %+v of %q", a, s)
		}
		switch {
		case a.IsNull():
			if rcpt || path != "<>" {
				t.Fatalf("null path from %q (rcpt %v)", s, rcpt)
			}
			return
		case a.Domain == "":
			if !rcpt || !strings.EqualFold(a.LocalPart, "postmaster") {
				t.Fatalf("no domain in %+v from %q", a, s)
			}
			return
		}
		if len(a.LocalPart) > maxLocalPartLen || len(a.Domain) > maxDomainLen {
			t.Fatalf("limits broken by %+v", a)
		}
		// Written back without the source route, the mailbox parses to
		// itself, also through ParseAddress.
		b, rest2, err := parsePath("<"+a.String()+">", rcpt)
		if err != nil || b != a || rest2 != "" {
			t.Fatalf("reparse of %+v: %+v %q %v", a, b, rest2, err)
		}
		if c, err := ParseAddress(a.String()); err != nil || c != a {
			t.Fatalf("ParseAddress(%q) = %+v, %v", a.String(), c, err)
		}
	})
}

func FuzzParseParams(f *testing.F) {
	for _, s := range []string{
		"", " SIZE=100 BODY=8BITMIME", " SMTPUTF8 RET=HDRS ENVID=a+2Bb", " AUTH=<>", " AUTH=u+40x",
		" NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a+40b", " NOTIFY=NEVER", " FOO=bar", " SIZE=99999999999999999999999",
		" BODY=BINARYMIME", "SIZE=1", " =", " ORCPT=;", " ENVID=+",
	} {
		f.Add(s, true, uint8(0xff))
		f.Add(s, false, uint8(0xfe))
	}
	f.Fuzz(func(t *testing.T, s string, mail bool, flags uint8) {
		set := paramSet{
			esmtp: flags&1 != 0, smtputf8: flags&2 != 0, dsn: flags&4 != 0,
			chunking: flags&8 != 0, size: flags&16 != 0, auth: flags&32 != 0,
		}
		var err error
		if mail {
			var mp MailParams
			mp, err = parseMailParams(s, set)
			if err == nil {
				if mp.Size < 0 || len(mp.EnvelopeID) > maxEnvIDLen || !isPrintableText(mp.EnvelopeID) || !isPrintableText(mp.Auth) {
					t.Fatalf("parseMailParams(%q) = %+v", s, mp)
				}
				if mp.Body == BodyBinaryMIME && !set.chunking || mp.SMTPUTF8 && !set.smtputf8 ||
					mp.Size != 0 && !set.size || mp.EnvelopeID != "" && !set.dsn || mp.Auth != "" && !set.auth {
					t.Fatalf("parseMailParams(%q) with %+v = %+v: unadvertised parameter accepted", s, set, mp)
				}
			}
		} else {
			var rp RcptParams
			rp, err = parseRcptParams(s, set)
			if err == nil {
				for _, n := range rp.Notify {
					if n == DSNNotifyNever && len(rp.Notify) != 1 {
						t.Fatalf("parseRcptParams(%q): NEVER not alone: %v", s, rp.Notify)
					}
				}
				if !isPrintableText(rp.OriginalRecipient) || (rp.OriginalRecipient == "") != (rp.OriginalRecipientType == "") {
					t.Fatalf("parseRcptParams(%q) = %+v", s, rp)
				}
				if (rp.Notify != nil || rp.OriginalRecipient != "") && !set.dsn {
					t.Fatalf("parseRcptParams(%q): DSN parameter accepted without DSN", s)
				}
			}
		}
		if err != nil {
			e := AsError(err)
			if e == nil || (e.Code != CodeParamSyntax && e.Code != CodeParamsNotRecog) || e.EnhancedCode != ECPermInvalidArgs ||
				!isPrintableText(e.Message) || len(e.Message) > 100 {
				t.Fatalf("%q: error %v", s, err)
			}
		} else if !set.esmtp && strings.Trim(s, " ") != "" {
			t.Fatalf("%q accepted after HELO", s)
		}
		// xtext: encoding always decodes back.
		if dec, err := decodeXtext(encodeXtext(s)); err != nil || dec != s {
			t.Fatalf("xtext round trip of %q: %q, %v", s, dec, err)
		}
	})
}

// refData is a byte-at-a-time model of the DATA rules written straight
// from RFC 5321 sections 4.1.1.4 and 4.5.2: the data ends at the first
// CRLF "." CRLF of the stream (a CRLF being assumed before it), the text
// before it has stuffed dots removed and its bare CR and LF rejected or
// normalised. It returns the text, the first rule broken (or
// ErrConnectionLost when the input ends first) and the offset after the
// terminator, -1 if there is none.
func refData(in []byte, opt dataOptions) (out []byte, end int, err error) {
	end = -1
	body := in
	if bytes.HasPrefix(in, []byte(".\r\n")) {
		end, body = 3, nil
	} else if k := bytes.Index(in, []byte("\r\n.\r\n")); k >= 0 {
		end, body = k+5, in[:k+2]
	}
	out = []byte{}
	lineLen, bol := 0, true
	crlf := func() error {
		if opt.MaxBytes > 0 && int64(len(out)+2) > opt.MaxBytes {
			return ErrMessageTooBig
		}
		out = append(out, '\r', '\n')
		lineLen = 0
		return nil
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		if bol && c == '.' {
			bol = false
			continue
		}
		bol = false
		switch {
		case c == '\r' && i+1 == len(body):
			// The input ended on a CR: undecided.
			return out, end, ErrConnectionLost
		case c == '\r' && body[i+1] == '\n':
			if err := crlf(); err != nil {
				return out, end, err
			}
			i++
			bol = true
		case c == '\r' || c == '\n':
			if !opt.Normalize {
				return out, end, ErrBareLineEnding
			}
			if err := crlf(); err != nil {
				return out, end, err
			}
		default:
			if opt.MaxLineLength > 0 && lineLen+1 > opt.MaxLineLength {
				return out, end, ErrTextLineTooLong
			}
			if opt.MaxBytes > 0 && int64(len(out)+1) > opt.MaxBytes {
				return out, end, ErrMessageTooBig
			}
			out = append(out, c)
			lineLen++
		}
	}
	if end < 0 {
		return out, end, ErrConnectionLost
	}
	return out, end, nil
}

// countBare counts the CR and LF octets of b that are not in a CRLF pair.
func countBare(b []byte) int {
	n := 0
	for i, c := range b {
		if c == '\r' && (i+1 == len(b) || b[i+1] != '\n') || c == '\n' && (i == 0 || b[i-1] != '\r') {
			n++
		}
	}
	return n
}

func FuzzDataReader(f *testing.F) {
	for _, s := range []string{
		".\r\n", "a\r\n.\r\n", "..a\r\n.\r\nQUIT\r\n", "a\n.\nb\r\n.\r\n", "a\r.\rb\r\n.\r\n",
		"a\n.\r\nb\r\n.\r\n", "a\r\n.\nb\r\n.\r\n", ".\n.\r\n", "\r\n.\r\r\n.\r\n", "abc\r\n.",
		strings.Repeat("x", 40) + "\r\n.\r\n",
	} {
		f.Add([]byte(s), false, uint16(0), uint8(0), uint8(0), uint8(0))
		f.Add([]byte(s), true, uint16(5), uint8(3), uint8(1), uint8(7))
	}
	f.Fuzz(func(t *testing.T, in []byte, norm bool, maxBytes uint16, maxLine uint8, readSize uint8, mode uint8) {
		opt := dataOptions{MaxBytes: int64(maxBytes), MaxLineLength: int(maxLine), Normalize: norm}
		wantOut, end, wantErr := refData(in, opt)

		v := readerVariants[int(mode)%len(readerVariants)]
		bufSize := []int{16, 64, 4096}[int(mode/4)%3]
		br := bufio.NewReaderSize(v.wrap(bytes.NewReader(in)), bufSize)
		dr := newDataReader(br, opt)
		ends := 0
		dr.onEnd = func() { ends++ }
		p := make([]byte, int(readSize)%64+1)
		var got []byte
		var err error
		for err == nil {
			var n int
			n, err = dr.Read(p)
			got = append(got, p[:n]...)
		}
		if int64(len(got)) != dr.Size() {
			t.Fatalf("Size %d, returned %d", dr.Size(), len(got))
		}
		switch wantErr {
		case nil:
			if err != io.EOF || !bytes.Equal(got, wantOut) {
				t.Fatalf("Read: %q, %v; want %q, EOF", got, err, wantOut)
			}
			if countBare(got) != 0 {
				t.Fatalf("output %q has a bare CR or LF", got)
			}
			if len(got) > len(in)+countBare(in) {
				t.Fatalf("output %d bytes from %d of input", len(got), len(in))
			}
		case ErrBareLineEnding:
			if err != wantErr || !bytes.Equal(got, wantOut) {
				t.Fatalf("Read: %q, %v; want %q, %v", got, err, wantOut, wantErr)
			}
		case ErrTextLineTooLong, ErrMessageTooBig:
			// When both limits fall in one piece of text either may be
			// reported; the text before the error is returned as it came.
			if err != ErrTextLineTooLong && err != ErrMessageTooBig || !bytes.HasPrefix(wantOut, got) {
				t.Fatalf("Read: %q, %v; want a prefix of %q, %v", got, err, wantOut, wantErr)
			}
		case ErrConnectionLost:
			if !errors.Is(err, ErrConnectionLost) || !bytes.Equal(got, wantOut) || !dr.Broken() {
				t.Fatalf("Read: %q, %v; want %q, %v", got, err, wantOut, wantErr)
			}
		}
		if opt.MaxBytes > 0 && dr.Size() > opt.MaxBytes {
			t.Fatalf("Size %d over MaxBytes %d", dr.Size(), opt.MaxBytes)
		}
		derr := dr.Drain(0)
		if end < 0 {
			if !errors.Is(derr, ErrConnectionLost) || !dr.Broken() || dr.Done() || ends != 0 {
				t.Fatalf("Drain without terminator: %v broken %v done %v ends %d", derr, dr.Broken(), dr.Done(), ends)
			}
			return
		}
		rest, _ := io.ReadAll(br)
		if derr != nil || !dr.Done() || dr.Broken() || ends != 1 || !bytes.Equal(rest, in[end:]) {
			t.Fatalf("after Drain: %v done %v broken %v ends %d, left %q, want %q", derr, dr.Done(), dr.Broken(), ends, rest, in[end:])
		}

		// Stopping early at any point and draining ends at the same place.
		br2 := bufio.NewReaderSize(v.wrap(bytes.NewReader(in)), bufSize)
		dr2 := newDataReader(br2, opt)
		k := int(maxBytes) % (len(got) + 1)
		if n, _ := io.ReadFull(dr2, make([]byte, k)); n != k {
			t.Fatalf("ReadFull(%d) = %d", k, n)
		}
		if err := dr2.Drain(0); err != nil {
			t.Fatalf("Drain after %d bytes: %v", k, err)
		}
		if rest2, _ := io.ReadAll(br2); !bytes.Equal(rest2, in[end:]) {
			t.Fatalf("Drain after %d bytes left %q, want %q", k, rest2, in[end:])
		}
	})
}

// refChunked is the BDAT text model (RFC 3030): the whole input is the
// message, no dot transparency, and the DATA rules for CR, LF, line
// length and size; a CR at the very end has no LF and is bare. Binary
// (BODY=BINARYMIME) keeps only the size limit.
func refChunked(in []byte, opt dataOptions) (out []byte, err error) {
	if opt.Binary {
		if opt.MaxBytes > 0 && int64(len(in)) > opt.MaxBytes {
			return in[:opt.MaxBytes], ErrMessageTooBig
		}
		return in, nil
	}
	out = []byte{}
	lineLen := 0
	crlf := func() error {
		if opt.MaxBytes > 0 && int64(len(out)+2) > opt.MaxBytes {
			return ErrMessageTooBig
		}
		out = append(out, '\r', '\n')
		lineLen = 0
		return nil
	}
	for i := 0; i < len(in); i++ {
		c := in[i]
		switch {
		case c == '\r' && i+1 < len(in) && in[i+1] == '\n':
			if err := crlf(); err != nil {
				return out, err
			}
			i++
		case c == '\r' || c == '\n':
			if !opt.Normalize {
				return out, ErrBareLineEnding
			}
			if err := crlf(); err != nil {
				return out, err
			}
		default:
			if opt.MaxLineLength > 0 && lineLen+1 > opt.MaxLineLength {
				return out, ErrTextLineTooLong
			}
			if opt.MaxBytes > 0 && int64(len(out)+1) > opt.MaxBytes {
				return out, ErrMessageTooBig
			}
			out = append(out, c)
			lineLen++
		}
	}
	return out, nil
}

func FuzzChunkedReader(f *testing.F) {
	for _, s := range []string{
		"", "a\r\n", ".\r\n..\r\n", "a\nb", "a\r", "\r\r\n", "a\r\n.\r\nQUIT\r\n", "\x00\xff\r\n",
		strings.Repeat("x", 40) + "\r\n",
	} {
		f.Add([]byte(s), false, false, uint16(0), uint8(0), uint8(0), uint8(0))
		f.Add([]byte(s), true, false, uint16(5), uint8(3), uint8(1), uint8(7))
		f.Add([]byte(s), false, true, uint16(3), uint8(1), uint8(2), uint8(5))
	}
	f.Fuzz(func(t *testing.T, in []byte, norm, binary bool, maxBytes uint16, maxLine uint8, readSize uint8, mode uint8) {
		opt := dataOptions{MaxBytes: int64(maxBytes), MaxLineLength: int(maxLine), Normalize: norm, Chunked: true, Binary: binary}
		wantOut, wantErr := refChunked(in, opt)

		v := readerVariants[int(mode)%len(readerVariants)]
		bufSize := []int{16, 64, 4096}[int(mode/4)%3]
		dr := newDataReader(bufio.NewReaderSize(v.wrap(bytes.NewReader(in)), bufSize), opt)
		ends := 0
		dr.onEnd = func() { ends++ }
		p := make([]byte, int(readSize)%64+1)
		var got []byte
		var err error
		for err == nil {
			var n int
			n, err = dr.Read(p)
			got = append(got, p[:n]...)
		}
		if int64(len(got)) != dr.Size() {
			t.Fatalf("Size %d, returned %d", dr.Size(), len(got))
		}
		if opt.MaxBytes > 0 && dr.Size() > opt.MaxBytes {
			t.Fatalf("Size %d over MaxBytes %d", dr.Size(), opt.MaxBytes)
		}
		switch wantErr {
		case nil:
			if err != io.EOF || !bytes.Equal(got, wantOut) || !dr.Done() || ends != 1 {
				t.Fatalf("Read: %q, %v (done %v, ends %d); want %q, EOF", got, err, dr.Done(), ends, wantOut)
			}
			if !binary && countBare(got) != 0 {
				t.Fatalf("output %q has a bare CR or LF", got)
			}
		case ErrBareLineEnding:
			if err != wantErr || !bytes.Equal(got, wantOut) {
				t.Fatalf("Read: %q, %v; want %q, %v", got, err, wantOut, wantErr)
			}
		default:
			if err != ErrTextLineTooLong && err != ErrMessageTooBig || !bytes.HasPrefix(wantOut, got) {
				t.Fatalf("Read: %q, %v; want a prefix of %q, %v", got, err, wantOut, wantErr)
			}
		}
		if wantErr != nil && (dr.Done() || ends != 0 || dr.Broken()) {
			t.Fatalf("after %v: done %v ends %d broken %v", wantErr, dr.Done(), ends, dr.Broken())
		}
	})
}
