package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"testing/iotest"
)

// readerVariant wraps the client's byte stream to vary how it arrives.
type readerVariant struct {
	name string
	wrap func(io.Reader) io.Reader
}

var readerVariants = []readerVariant{
	{"plain", func(r io.Reader) io.Reader { return r }},
	{"onebyte", iotest.OneByteReader},
	{"half", iotest.HalfReader},
	{"dataerr", iotest.DataErrReader},
}

// readResult is what a consumer saw from a dataReader, and where the
// connection was left.
type readResult struct {
	out    string
	err    error // first non-nil error from Read
	drain  error // from Drain, when it was called
	rest   string
	size   int64
	done   bool
	broken bool
	ends   int // onEnd calls
}

// runData feeds input through wrap and a bufio.Reader of bufSize into a
// dataReader, reads with a buffer of readSize until an error, drains if the
// terminator was not reached, and returns what is left on the connection.
func runData(input string, opt dataOptions, wrap func(io.Reader) io.Reader, bufSize, readSize int) readResult {
	br := bufio.NewReaderSize(wrap(strings.NewReader(input)), bufSize)
	dr := newDataReader(br, opt)
	var res readResult
	dr.onEnd = func() { res.ends++ }
	var out bytes.Buffer
	p := make([]byte, readSize)
	for {
		n, err := dr.Read(p)
		out.Write(p[:n])
		if err != nil {
			res.err = err
			break
		}
	}
	if !dr.Done() && !dr.Broken() {
		res.drain = dr.Drain(0)
	}
	rest, _ := io.ReadAll(br)
	res.out, res.rest = out.String(), string(rest)
	res.size, res.done, res.broken = dr.Size(), dr.Done(), dr.Broken()
	return res
}

// forEachWay runs f for every reader variant, a tiny and a normal bufio
// buffer, and several read sizes (1 exercises a CRLF split across Reads).
func forEachWay(t *testing.T, f func(t *testing.T, wrap func(io.Reader) io.Reader, bufSize, readSize int)) {
	for _, v := range readerVariants {
		for _, bufSize := range []int{16, 4096} {
			for _, readSize := range []int{1, 2, 7, 4096} {
				t.Run(fmt.Sprintf("%s/buf%d/read%d", v.name, bufSize, readSize), func(t *testing.T) {
					f(t, v.wrap, bufSize, readSize)
				})
			}
		}
	}
}

const after = "QUIT\r\n"

type dataCase struct {
	name    string
	in      string // data after 354
	rest    string // what follows it; "QUIT\r\n" when empty
	opt     dataOptions
	want    string // message text; for an error, the text before it
	wantErr error  // nil: the message ends cleanly with io.EOF
}

var (
	reject    = dataOptions{}
	normalize = dataOptions{Normalize: true}
)

var dataCases = []dataCase{
	// Terminator and dot-stuffing, RFC 5321 section 4.5.2.
	{name: "empty message", in: ".\r\n", want: ""},
	{name: "one line", in: "a\r\n.\r\n", want: "a\r\n"},
	{name: "lines", in: "Subject: x\r\n\r\nbody\r\n.\r\n", want: "Subject: x\r\n\r\nbody\r\n"},
	{name: "empty lines", in: "\r\n\r\n.\r\n", want: "\r\n\r\n"},
	{name: "stuffed dot first", in: "..a\r\n.\r\n", want: ".a\r\n"},
	{name: "stuffed lone dot", in: "a\r\n..\r\n.\r\n", want: "a\r\n.\r\n"},
	{name: "stuffed three dots", in: "...\r\n.\r\n", want: "..\r\n"},
	{name: "dot then space", in: ". \r\n.\r\n", want: " \r\n"},
	{name: "dot mid line", in: "a.b\r\n.a\r\n.\r\n", want: "a.b\r\na\r\n"},
	{name: "dot only removed once", in: "a\r\n..\r\n..\r\n.\r\n", want: "a\r\n.\r\n.\r\n"},
	{name: "first terminator wins", in: "a\r\n.\r\n", rest: "b\r\n.\r\n" + after, want: "a\r\n"},
	{name: "dot CR CR", in: "a\r\n.\r\r\n.\r\n", want: "a\r\n", wantErr: ErrBareLineEnding},
	{name: "long line", in: strings.Repeat("x", 100) + "\r\n.\r\n", want: strings.Repeat("x", 100) + "\r\n"},
	{name: "binary octets", in: "\x00\xff\t\x7f\r\n.\r\n", want: "\x00\xff\t\x7f\r\n"},

	// The smuggling class: a bare CR or LF never ends the data. In reject
	// mode the first one is an error; the real terminator is further on.
	{name: "LF.LF", in: "a\n.\nMAIL FROM:<x@y>\r\n.\r\n", want: "a", wantErr: ErrBareLineEnding},
	{name: "CR.CR", in: "a\r.\rMAIL FROM:<x@y>\r\n.\r\n", want: "a", wantErr: ErrBareLineEnding},
	{name: "LF.CRLF", in: "a\n.\r\nMAIL FROM:<x@y>\r\n.\r\n", want: "a", wantErr: ErrBareLineEnding},
	{name: "CRLF.LF", in: "a\r\n.\nMAIL FROM:<x@y>\r\n.\r\n", want: "a\r\n", wantErr: ErrBareLineEnding},
	{name: "CR.CRLF", in: "a\r.\r\nMAIL FROM:<x@y>\r\n.\r\n", want: "a", wantErr: ErrBareLineEnding},
	{name: "CRLF.CR", in: "a\r\n.\rMAIL FROM:<x@y>\r\n.\r\n", want: "a\r\n", wantErr: ErrBareLineEnding},
	{name: "first line .LF", in: ".\nMAIL FROM:<x@y>\r\n.\r\n", want: "", wantErr: ErrBareLineEnding},
	{name: "first line .CR", in: ".\rMAIL FROM:<x@y>\r\n.\r\n", want: "", wantErr: ErrBareLineEnding},
	{name: "first line LF", in: "\n.\r\n.\r\n", want: "", wantErr: ErrBareLineEnding},
	{name: "bare LF in text", in: "ab\ncd\r\n.\r\n", want: "ab", wantErr: ErrBareLineEnding},
	{name: "bare CR in text", in: "ab\rcd\r\n.\r\n", want: "ab", wantErr: ErrBareLineEnding},
	{name: "CR CRLF", in: "ab\r\r\n.\r\n", want: "ab", wantErr: ErrBareLineEnding},
	{name: "LF CRLF", in: "ab\n\r\n.\r\n", want: "ab", wantErr: ErrBareLineEnding},

	// The same in normalize mode: CRLF everywhere, still no early end.
	{name: "norm LF.LF", in: "a\n.\nMAIL FROM:<x@y>\r\n.\r\n", opt: normalize, want: "a\r\n.\r\nMAIL FROM:<x@y>\r\n"},
	{name: "norm CR.CR", in: "a\r.\rMAIL FROM:<x@y>\r\n.\r\n", opt: normalize, want: "a\r\n.\r\nMAIL FROM:<x@y>\r\n"},
	{name: "norm LF.CRLF", in: "a\n.\r\nMAIL FROM:<x@y>\r\n.\r\n", opt: normalize, want: "a\r\n.\r\nMAIL FROM:<x@y>\r\n"},
	{name: "norm CRLF.LF", in: "a\r\n.\nMAIL FROM:<x@y>\r\n.\r\n", opt: normalize, want: "a\r\n\r\nMAIL FROM:<x@y>\r\n"},
	{name: "norm CR.CRLF", in: "a\r.\r\nb\r\n.\r\n", opt: normalize, want: "a\r\n.\r\nb\r\n"},
	{name: "norm CRLF.CR", in: "a\r\n.\rb\r\n.\r\n", opt: normalize, want: "a\r\n\r\nb\r\n"},
	{name: "norm first line .LF", in: ".\nb\r\n.\r\n", opt: normalize, want: "\r\nb\r\n"},
	{name: "norm LF LF dot", in: "a\n\n.\r\n.\r\n", opt: normalize, want: "a\r\n\r\n.\r\n"},
	{name: "norm CR CRLF", in: "ab\r\r\n.\r\n", opt: normalize, want: "ab\r\n\r\n"},
	{name: "norm LF CRLF", in: "ab\n\r\n.\r\n", opt: normalize, want: "ab\r\n\r\n"},
	{name: "norm LF CR", in: "ab\n\rc\r\n.\r\n", opt: normalize, want: "ab\r\n\r\nc\r\n"},
	{name: "norm clean text unchanged", in: "a\r\n..b\r\n.\r\n", opt: normalize, want: "a\r\n.b\r\n"},

	// Size limit (RFC 1870): counted after unstuffing and normalisation.
	{name: "size at limit", in: "abc\r\n.\r\n", opt: dataOptions{MaxBytes: 5}, want: "abc\r\n"},
	{name: "size over limit", in: "abc\r\n.\r\n", opt: dataOptions{MaxBytes: 4}, want: "abc", wantErr: ErrMessageTooBig},
	{name: "size over in text", in: "abcdef\r\n.\r\n", opt: dataOptions{MaxBytes: 3}, want: "abc", wantErr: ErrMessageTooBig},
	{name: "size counts unstuffed", in: "..\r\n.\r\n", opt: dataOptions{MaxBytes: 3}, want: ".\r\n"},
	{name: "size counts normalised", in: "a\nb\r\n.\r\n", opt: dataOptions{MaxBytes: 6, Normalize: true}, want: "a\r\nb\r\n"},
	{name: "size over normalised", in: "a\nb\r\n.\r\n", opt: dataOptions{MaxBytes: 5, Normalize: true}, want: "a\r\nb", wantErr: ErrMessageTooBig},
	{name: "size over at bare LF", in: "a\nb\r\n.\r\n", opt: dataOptions{MaxBytes: 2, Normalize: true}, want: "a", wantErr: ErrMessageTooBig},
	{name: "size empty message", in: ".\r\n", opt: dataOptions{MaxBytes: 1}, want: ""},
	{name: "size big message", in: strings.Repeat("0123456789\r\n", 100) + ".\r\n", opt: dataOptions{MaxBytes: 1000},
		want: strings.Repeat("0123456789\r\n", 83) + "0123", wantErr: ErrMessageTooBig},

	// Text line length (RFC 5321 section 4.5.3.1.6), CRLF not counted.
	{name: "line at limit", in: "abc\r\nde\r\n.\r\n", opt: dataOptions{MaxLineLength: 3}, want: "abc\r\nde\r\n"},
	{name: "line over limit", in: "abc\r\nabcd\r\n.\r\n", opt: dataOptions{MaxLineLength: 3}, want: "abc\r\nabc", wantErr: ErrTextLineTooLong},
	{name: "line stuffed dot not counted", in: ".abc\r\n.\r\n", opt: dataOptions{MaxLineLength: 3}, want: "abc\r\n"},
	{name: "line limit long line", in: strings.Repeat("y", 1000) + "\r\n.\r\n", opt: dataOptions{MaxLineLength: 998},
		want: strings.Repeat("y", 998), wantErr: ErrTextLineTooLong},
	{name: "line limit 998 ok", in: strings.Repeat("y", 998) + "\r\n.\r\n", opt: dataOptions{MaxLineLength: 998},
		want: strings.Repeat("y", 998) + "\r\n"},
	{name: "line normalised bare LF ends line", in: "abc\ndef\r\n.\r\n", opt: dataOptions{MaxLineLength: 3, Normalize: true}, want: "abc\r\ndef\r\n"},
}

func TestDataReader(t *testing.T) {
	for _, tc := range dataCases {
		t.Run(tc.name, func(t *testing.T) {
			forEachWay(t, func(t *testing.T, wrap func(io.Reader) io.Reader, bufSize, readSize int) {
				rest := tc.rest
				if rest == "" {
					rest = after
				}
				res := runData(tc.in+rest, tc.opt, wrap, bufSize, readSize)
				if tc.wantErr == nil {
					if res.err != io.EOF {
						t.Fatalf("err = %v, want io.EOF", res.err)
					}
					if res.out != tc.want {
						t.Errorf("out = %q, want %q", res.out, tc.want)
					}
				} else {
					if res.err != tc.wantErr {
						t.Fatalf("err = %v, want %v", res.err, tc.wantErr)
					}
					// The text before an error is returned as it comes in;
					// how much of the offending piece depends on how it
					// arrived, except for a bare line ending.
					if tc.wantErr == ErrBareLineEnding && res.out != tc.want ||
						!strings.HasPrefix(tc.want, res.out) {
						t.Errorf("out = %q, want %q", res.out, tc.want)
					}
					if res.drain != nil {
						t.Errorf("Drain = %v", res.drain)
					}
				}
				if res.rest != rest {
					t.Errorf("left on the connection %q, want %q", res.rest, rest)
				}
				if !res.done || res.broken || res.ends != 1 {
					t.Errorf("done %v broken %v onEnd calls %d, want true false 1", res.done, res.broken, res.ends)
				}
				if res.size != int64(len(res.out)) {
					t.Errorf("Size = %d, returned %d", res.size, len(res.out))
				}
				if m := tc.opt.MaxBytes; m > 0 && res.size > m {
					t.Errorf("Size = %d over MaxBytes %d", res.size, m)
				}
			})
		})
	}
}

// TestDataReaderDrainAnywhere stops reading after every possible number of
// bytes and checks that Drain always leaves the connection right after the
// real terminator.
func TestDataReaderDrainAnywhere(t *testing.T) {
	inputs := []struct {
		name string
		in   string
		opt  dataOptions
	}{
		{"clean", "a\r\n..b\r\n\r\nc.\r\n.\r\n", reject},
		{"smuggling", "x\n.\ny\r.\rz\r\n.\nw\r\n.\r\n", normalize},
		{"dots", "..\r\n...\r\n.\r\r\n.\r\n", normalize},
		{"empty", ".\r\n", reject},
	}
	for _, tc := range inputs {
		full := runData(tc.in+after, tc.opt, iotest.OneByteReader, 16, 1)
		if full.err != io.EOF {
			t.Fatalf("%s: full read: %v", tc.name, full.err)
		}
		for k := 0; k <= len(full.out); k++ {
			for _, v := range readerVariants {
				t.Run(fmt.Sprintf("%s/%d/%s", tc.name, k, v.name), func(t *testing.T) {
					br := bufio.NewReaderSize(v.wrap(strings.NewReader(tc.in+after)), 16)
					dr := newDataReader(br, tc.opt)
					ends := 0
					dr.onEnd = func() { ends++ }
					got := make([]byte, k)
					n, err := io.ReadFull(dr, got)
					if n != k {
						t.Fatalf("ReadFull(%d) = %d, %v", k, n, err)
					}
					if string(got) != full.out[:k] {
						t.Fatalf("read %q, want %q", got, full.out[:k])
					}
					if err := dr.Drain(0); err != nil {
						t.Fatalf("Drain: %v", err)
					}
					if err := dr.Drain(0); err != nil {
						t.Fatalf("second Drain: %v", err)
					}
					if rest, _ := io.ReadAll(br); string(rest) != after {
						t.Errorf("left %q, want %q", rest, after)
					}
					if !dr.Done() || dr.Broken() || ends != 1 {
						t.Errorf("done %v broken %v onEnd calls %d", dr.Done(), dr.Broken(), ends)
					}
					n, err = dr.Read(make([]byte, 10))
					if n != 0 || err == nil {
						t.Errorf("Read after Drain = %d, %v", n, err)
					}
					if k < len(full.out) && !errors.Is(err, errDrained) {
						t.Errorf("Read after Drain of unread text = %v, want errDrained", err)
					}
				})
			}
		}
	}
}

func TestDataReaderErrorsSticky(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("a\nb\r\n.\r\n" + after))
	dr := newDataReader(br, reject)
	p := make([]byte, 100)
	n, err := dr.Read(p)
	if string(p[:n]) != "a" || err != ErrBareLineEnding {
		t.Fatalf("Read = %q, %v", p[:n], err)
	}
	for i := 0; i < 2; i++ {
		if n, err := dr.Read(p); n != 0 || err != ErrBareLineEnding {
			t.Fatalf("Read again = %d, %v; want sticky ErrBareLineEnding", n, err)
		}
	}
	if err := dr.Drain(0); err != nil {
		t.Fatal(err)
	}
	if n, err := dr.Read(p); n != 0 || err != ErrBareLineEnding {
		t.Fatalf("Read after Drain = %d, %v; want ErrBareLineEnding", n, err)
	}
	if n, err := dr.Read(nil); n != 0 || err != ErrBareLineEnding {
		t.Fatalf("Read(nil) = %d, %v", n, err)
	}
}

func TestDataReaderZeroLengthRead(t *testing.T) {
	dr := newDataReader(bufio.NewReader(strings.NewReader("a\r\n.\r\n")), reject)
	if n, err := dr.Read(nil); n != 0 || err != nil {
		t.Fatalf("Read(nil) = %d, %v", n, err)
	}
	got, err := io.ReadAll(dr)
	if string(got) != "a\r\n" || err != nil {
		t.Fatalf("ReadAll = %q, %v", got, err)
	}
}

// timeoutErr is a net.Error that reports a timeout, like a conn after its
// read deadline.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

var _ net.Error = timeoutErr{}

func TestDataReaderReadErrors(t *testing.T) {
	otherErr := errors.New("connection reset by peer")
	tests := []struct {
		name      string
		src       io.Reader
		want      *Error // sentinel the error must wrap
		wantCause error
		wantOut   string
	}{
		{"timeout", io.MultiReader(strings.NewReader("abc\r\nde"), iotest.ErrReader(timeoutErr{})), ErrDataTimeout, timeoutErr{}, "abc\r\nde"},
		{"timeout wrapped", iotest.ErrReader(fmt.Errorf("read tcp: %w", timeoutErr{})), ErrDataTimeout, timeoutErr{}, ""},
		{"EOF mid message", strings.NewReader("abc\r\n"), ErrConnectionLost, io.ErrUnexpectedEOF, "abc\r\n"},
		{"EOF after dot", strings.NewReader("abc\r\n."), ErrConnectionLost, io.ErrUnexpectedEOF, "abc\r\n"},
		{"EOF after CR", strings.NewReader("abc\r"), ErrConnectionLost, io.ErrUnexpectedEOF, "abc"},
		{"EOF after dot CR", strings.NewReader("abc\r\n.\r"), ErrConnectionLost, io.ErrUnexpectedEOF, "abc\r\n"},
		{"reset", io.MultiReader(strings.NewReader("x"), iotest.ErrReader(otherErr)), ErrConnectionLost, otherErr, "x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dr := newDataReader(bufio.NewReaderSize(tc.src, 16), reject)
			ended := false
			dr.onEnd = func() { ended = true }
			got, err := io.ReadAll(dr)
			if string(got) != tc.wantOut {
				t.Errorf("out = %q, want %q", got, tc.wantOut)
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, tc.wantCause) {
				t.Fatalf("err = %v, want it to wrap %v and %v", err, tc.want, tc.wantCause)
			}
			if errors.Is(err, io.EOF) {
				t.Errorf("err = %v wraps io.EOF: a consumer would take it for the end", err)
			}
			if e := AsError(err); e == nil || e.Code != tc.want.Code || e.EnhancedCode != tc.want.EnhancedCode {
				t.Errorf("AsError(err) = %v, want code %d %v", e, tc.want.Code, tc.want.EnhancedCode)
			}
			if !dr.Broken() || dr.Done() || ended {
				t.Errorf("broken %v done %v ended %v, want true false false", dr.Broken(), dr.Done(), ended)
			}
			if n, err2 := dr.Read(make([]byte, 4)); n != 0 || err2 != err {
				t.Errorf("Read again = %d, %v; want sticky %v", n, err2, err)
			}
			if derr := dr.Drain(0); !errors.Is(derr, tc.want) {
				t.Errorf("Drain = %v, want it to wrap %v", derr, tc.want)
			}
		})
	}
}

func TestDataReaderDrainErrors(t *testing.T) {
	body := "abc\ndefgh\r\n.\r\n" // Read stops at the bare LF after 3 bytes
	toEnd := int64(len(body) - 3) // what Drain then has to consume
	tests := []struct {
		name     string
		src      func() io.Reader
		limit    int64
		wantErr  error // nil: success
		wantRest string
	}{
		{"no limit", func() io.Reader { return strings.NewReader(body + after) }, 0, nil, after},
		{"limit exact", func() io.Reader { return strings.NewReader(body + after) }, toEnd, nil, after},
		{"limit large", func() io.Reader { return strings.NewReader(body + after) }, 1 << 20, nil, after},
		{"limit one short", func() io.Reader { return strings.NewReader(body + after) }, toEnd - 1, ErrConnectionLost, ""},
		{"limit tiny", func() io.Reader { return strings.NewReader(body + after) }, 1, ErrConnectionLost, ""},
		{"EOF before end", func() io.Reader { return strings.NewReader("abc\ndef\r\n") }, 0, ErrConnectionLost, ""},
		{"timeout", func() io.Reader {
			return io.MultiReader(strings.NewReader("abc\ndef\r\n."), iotest.ErrReader(timeoutErr{}))
		}, 0, ErrDataTimeout, ""},
	}
	for _, tc := range tests {
		for _, v := range readerVariants {
			t.Run(tc.name+"/"+v.name, func(t *testing.T) {
				br := bufio.NewReaderSize(v.wrap(tc.src()), 16)
				dr := newDataReader(br, reject)
				ended := 0
				dr.onEnd = func() { ended++ }
				if _, err := io.ReadAll(dr); err != ErrBareLineEnding {
					t.Fatalf("ReadAll: %v, want ErrBareLineEnding", err)
				}
				err := dr.Drain(tc.limit)
				if tc.wantErr == nil {
					if err != nil || !dr.Done() || dr.Broken() || ended != 1 {
						t.Fatalf("Drain = %v, done %v broken %v ended %d", err, dr.Done(), dr.Broken(), ended)
					}
					if rest, _ := io.ReadAll(br); string(rest) != tc.wantRest {
						t.Errorf("left %q, want %q", rest, tc.wantRest)
					}
					return
				}
				if !errors.Is(err, tc.wantErr) || AsError(err) == nil {
					t.Fatalf("Drain = %v, want it to wrap %v", err, tc.wantErr)
				}
				if !dr.Broken() || dr.Done() || ended != 0 {
					t.Errorf("broken %v done %v ended %d, want true false 0", dr.Broken(), dr.Done(), ended)
				}
				if err2 := dr.Drain(0); err2 != err {
					t.Errorf("second Drain = %v, want %v", err2, err)
				}
				// The rule that was broken stays what Read reports.
				if _, rerr := dr.Read(make([]byte, 1)); rerr != ErrBareLineEnding {
					t.Errorf("Read after failed Drain = %v, want ErrBareLineEnding", rerr)
				}
			})
		}
	}
}

func TestDataReaderDrainBeforeRead(t *testing.T) {
	br := bufio.NewReaderSize(strings.NewReader("a\r\n..\r\nb\n.\n\r\n.\r\n"+after), 16)
	dr := newDataReader(br, reject)
	if err := dr.Drain(0); err != nil {
		t.Fatal(err)
	}
	if rest, _ := io.ReadAll(br); string(rest) != after {
		t.Fatalf("left %q", rest)
	}
	if _, err := dr.Read(make([]byte, 1)); !errors.Is(err, errDrained) {
		t.Fatalf("Read after Drain = %v", err)
	}
}

func TestDataReaderOnEndOnce(t *testing.T) {
	for _, name := range []string{"read", "drain"} {
		t.Run(name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader("hello\r\n.\r\n" + after))
			dr := newDataReader(br, reject)
			calls, doneAtCall := 0, false
			dr.onEnd = func() {
				calls++
				doneAtCall = br.Buffered() == len(after)
			}
			if name == "read" {
				if _, err := io.ReadAll(dr); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < 3; i++ {
				if err := dr.Drain(0); err != nil {
					t.Fatal(err)
				}
			}
			if calls != 1 || !doneAtCall {
				t.Fatalf("onEnd calls %d, after the terminator %v", calls, doneAtCall)
			}
		})
	}
}

// loopReader returns its pattern over and over: an endless message.
type loopReader struct {
	pat []byte
	off int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], l.pat[l.off:])
		n += k
		l.off = (l.off + k) % len(l.pat)
	}
	return n, nil
}

func TestDataReaderReadAllocs(t *testing.T) {
	tests := []struct {
		name string
		pat  string
		opt  dataOptions
	}{
		{"clean", "Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n..stuffed\r\n\r\n", dataOptions{MaxLineLength: 998}},
		{"normalize", "bare LF\nbare CR\rcrlf\r\n..x\r\n", dataOptions{Normalize: true, MaxLineLength: 998}},
		{"long lines", strings.Repeat("z", 5000) + "\r\n", dataOptions{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dr := newDataReader(bufio.NewReaderSize(&loopReader{pat: []byte(tc.pat)}, 4096), tc.opt)
			p := make([]byte, 1000)
			allocs := testing.AllocsPerRun(1000, func() {
				if _, err := dr.Read(p); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per Read, want 0", allocs)
			}
		})
	}
}

// makeMessage returns a message of about size bytes of 76-octet lines,
// every tenth one dot-stuffed, with its terminator.
func makeMessage(size int) []byte {
	var b bytes.Buffer
	line := strings.Repeat("abcdefghij", 7) + "klmnop"
	for i := 0; b.Len() < size; i++ {
		if i%10 == 9 {
			b.WriteString(".")
		}
		b.WriteString(line[:len(line)-2])
		b.WriteString("\r\n")
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}

// bareCRMessage is size bytes of "a\r" with a CRLF every 16 KiB: the
// worst case for normalisation, which must stay linear.
func bareCRMessage(size int) []byte {
	var b bytes.Buffer
	for b.Len() < size {
		b.WriteString(strings.Repeat("a\r", 8<<10))
		b.WriteString("\r\n")
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}

func BenchmarkDataReader(b *testing.B) {
	type bench struct {
		name string
		msg  []byte
		opt  dataOptions
	}
	benches := []bench{
		{"1KiB", makeMessage(1 << 10), dataOptions{MaxBytes: 50 << 20, MaxLineLength: 998}},
		{"1024KiB", makeMessage(1 << 20), dataOptions{MaxBytes: 50 << 20, MaxLineLength: 998}},
		{"1024KiB-bareCR-normalize", bareCRMessage(1 << 20), dataOptions{MaxBytes: 50 << 20, Normalize: true}},
	}
	for _, bc := range benches {
		b.Run(bc.name, func(b *testing.B) {
			msg := bc.msg
			src := bytes.NewReader(msg)
			br := bufio.NewReaderSize(src, 4096)
			buf := make([]byte, 32<<10)
			// Hide io.Discard's ReadFrom so that the copy goes through buf.
			var dst io.Writer = struct{ io.Writer }{io.Discard}
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				src.Reset(msg)
				br.Reset(src)
				dr := newDataReader(br, bc.opt)
				if _, err := io.CopyBuffer(dst, dr, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// runChunked reads input as BDAT text (Chunked) through wrap, a bufio
// buffer of bufSize and reads of readSize, until an error.
func runChunked(input string, opt dataOptions, wrap func(io.Reader) io.Reader, bufSize, readSize int) readResult {
	opt.Chunked = true
	br := bufio.NewReaderSize(wrap(strings.NewReader(input)), bufSize)
	dr := newDataReader(br, opt)
	var res readResult
	dr.onEnd = func() { res.ends++ }
	var out bytes.Buffer
	p := make([]byte, readSize)
	for {
		n, err := dr.Read(p)
		out.Write(p[:n])
		if err != nil {
			res.err = err
			break
		}
	}
	res.out = out.String()
	res.size, res.done, res.broken = dr.Size(), dr.Done(), dr.Broken()
	return res
}

// chunkedCases are BDAT texts (RFC 3030): no terminator, no dot
// transparency, the DATA rules for line endings and lengths, and Binary
// for BODY=BINARYMIME.
var chunkedCases = []dataCase{
	{name: "empty", in: "", want: ""},
	{name: "lines", in: "Subject: x\r\n\r\nbody\r\n", want: "Subject: x\r\n\r\nbody\r\n"},
	{name: "no final CRLF", in: "a\r\nb", want: "a\r\nb"},
	{name: "dots are text", in: ".\r\n..a\r\n.\r\nb\r\n", want: ".\r\n..a\r\n.\r\nb\r\n"},
	{name: "terminator is text", in: "a\r\n.\r\nQUIT\r\n", want: "a\r\n.\r\nQUIT\r\n"},
	{name: "bare LF", in: "a\nb\r\n", want: "a", wantErr: ErrBareLineEnding},
	{name: "bare CR", in: "a\rb\r\n", want: "a", wantErr: ErrBareLineEnding},
	{name: "CR CRLF", in: "a\r\r\n", want: "a", wantErr: ErrBareLineEnding},
	{name: "final CR is bare", in: "a\r\nb\r", want: "a\r\nb", wantErr: ErrBareLineEnding},
	{name: "lone CR", in: "\r", want: "", wantErr: ErrBareLineEnding},
	{name: "normalize LF", in: "a\nb\n", opt: normalize, want: "a\r\nb\r\n"},
	{name: "normalize final CR", in: "a\r", opt: normalize, want: "a\r\n"},
	{name: "normalize CR CR", in: "\r\r", opt: normalize, want: "\r\n\r\n"},
	{name: "normalize dot", in: "a\n.\nb", opt: normalize, want: "a\r\n.\r\nb"},
	{name: "line at limit", in: "12345\r\n", opt: dataOptions{MaxLineLength: 5}, want: "12345\r\n"},
	{name: "line over limit", in: "ab\r\n123456\r\n", opt: dataOptions{MaxLineLength: 5}, want: "ab\r\n12345", wantErr: ErrTextLineTooLong},
	{name: "last line over limit", in: "123456", opt: dataOptions{MaxLineLength: 5}, want: "12345", wantErr: ErrTextLineTooLong},
	{name: "size at limit", in: "abcd\r\n", opt: dataOptions{MaxBytes: 6}, want: "abcd\r\n"},
	{name: "size over limit", in: "abcd\r\nx", opt: dataOptions{MaxBytes: 6}, want: "abcd\r\n", wantErr: ErrMessageTooBig},
	{name: "normalized over limit", in: "abcd\n", opt: dataOptions{MaxBytes: 5, Normalize: true}, want: "abcd", wantErr: ErrMessageTooBig},

	{name: "binary", in: "\x00\n\r.\r\n\r", opt: dataOptions{Binary: true, MaxLineLength: 2}, want: "\x00\n\r.\r\n\r"},
	{name: "binary long line", in: strings.Repeat("x", 50), opt: dataOptions{Binary: true, MaxLineLength: 5}, want: strings.Repeat("x", 50)},
	{name: "binary at limit", in: "\n\n\n\n", opt: dataOptions{Binary: true, MaxBytes: 4}, want: "\n\n\n\n"},
	{name: "binary over limit", in: "\n\n\n\n\n", opt: dataOptions{Binary: true, MaxBytes: 4}, want: "\n\n\n\n", wantErr: ErrMessageTooBig},
}

func TestChunkedReader(t *testing.T) {
	for _, tc := range chunkedCases {
		t.Run(tc.name, func(t *testing.T) {
			forEachWay(t, func(t *testing.T, wrap func(io.Reader) io.Reader, bufSize, readSize int) {
				res := runChunked(tc.in, tc.opt, wrap, bufSize, readSize)
				if tc.wantErr == nil {
					if res.err != io.EOF || res.out != tc.want || !res.done || res.ends != 1 {
						t.Fatalf("got %q, %v (done %v, ends %d); want %q, EOF", res.out, res.err, res.done, res.ends, tc.want)
					}
				} else if res.err != tc.wantErr || res.done || res.ends != 0 ||
					// As for DATA: the text before the error comes as it
					// arrives; exactly up to a bare line ending.
					tc.wantErr == ErrBareLineEnding && res.out != tc.want || !strings.HasPrefix(tc.want, res.out) {
					t.Fatalf("got %q, %v (done %v); want %q, %v", res.out, res.err, res.done, tc.want, tc.wantErr)
				}
				if res.size != int64(len(res.out)) || res.broken {
					t.Fatalf("Size %d for %d bytes, broken %v", res.size, len(res.out), res.broken)
				}
			})
		})
	}
}

// A read error of the chunk source (the connection) makes the reader
// broken with ErrConnectionLost or ErrDataTimeout, and stays so.
func TestChunkedReaderSourceErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"lost", errors.New("connection reset"), ErrConnectionLost},
		{"timeout", timeoutErr{}, ErrDataTimeout},
	} {
		for _, binary := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/binary=%v", tc.name, binary), func(t *testing.T) {
				src := io.MultiReader(strings.NewReader("abc\r\n"), iotest.ErrReader(tc.err))
				dr := newDataReader(bufio.NewReaderSize(src, 16), dataOptions{Chunked: true, Binary: binary})
				got, err := io.ReadAll(dr)
				if !errors.Is(err, tc.want) || !dr.Broken() || dr.Done() || string(got) != "abc\r\n" {
					t.Fatalf("ReadAll = %q, %v (broken %v); want %v", got, err, dr.Broken(), tc.want)
				}
				if _, err2 := dr.Read(make([]byte, 4)); !errors.Is(err2, tc.want) {
					t.Fatalf("second Read: %v, want sticky %v", err2, tc.want)
				}
			})
		}
	}
}

// Errors are sticky: reading on after a refusal never pulls more of the
// source. That is what kept a BDAT session waiting for a chunk that
// never came (issue 19): bufio's WriteTo, which io.Copy uses, reads on
// after an error that came with data.
func TestChunkedReaderStickyDoesNotRead(t *testing.T) {
	for _, opt := range []dataOptions{{MaxBytes: 4}, {MaxLineLength: 2}, {}, {Binary: true, MaxBytes: 4}} {
		opt.Chunked = true
		src := &countingReader{r: strings.NewReader("abc\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")}
		dr := newDataReader(bufio.NewReaderSize(src, 16), opt)
		if _, err := io.Copy(io.Discard, bufio.NewReaderSize(dr, 16)); err == nil {
			t.Fatalf("%+v: no error", opt)
		}
		before := src.n
		for range 3 {
			if n, err := dr.Read(make([]byte, 64)); n != 0 || err == nil || err == io.EOF {
				t.Fatalf("%+v: Read after error = %d, %v", opt, n, err)
			}
		}
		if src.n != before || src.n > 32 {
			t.Fatalf("%+v: source read %d bytes, then %d more after the error", opt, before, src.n-before)
		}
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}
