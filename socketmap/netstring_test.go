package socketmap

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadNetstring(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		max  int
		want []string // payloads read in turn before the final result
		err  error    // the final result (io.EOF after a good stream)
	}{
		{name: "empty", in: "0:,", want: []string{""}, err: io.EOF},
		{name: "simple", in: "3:abc,", want: []string{"abc"}, err: io.EOF},
		{name: "request", in: "23:mailbox bob@example.org,", want: []string{"mailbox bob@example.org"}, err: io.EOF},
		{name: "two in a row", in: "1:a,2:bc,", want: []string{"a", "bc"}, err: io.EOF},
		{name: "binary payload", in: "5:a\x00:,\n,", want: []string{"a\x00:,\n"}, err: io.EOF},
		{name: "at the limit", in: "5:abcde,", max: 5, want: []string{"abcde"}, err: io.EOF},
		{name: "no limit", in: "10:0123456789,", max: -1, want: []string{"0123456789"}, err: io.EOF},
		{name: "nothing", in: "", err: io.EOF},

		{name: "empty length", in: ":,", err: ErrNetstring},
		{name: "leading zero", in: "03:abc,", err: ErrNetstring},
		{name: "double zero", in: "00:,", err: ErrNetstring},
		{name: "sign", in: "+3:abc,", err: ErrNetstring},
		{name: "negative", in: "-3:abc,", err: ErrNetstring},
		{name: "space before", in: " 3:abc,", err: ErrNetstring},
		{name: "space after length", in: "3 :abc,", err: ErrNetstring},
		{name: "hex", in: "0x3:abc,", err: ErrNetstring},
		{name: "missing comma", in: "3:abcd", err: ErrNetstring},
		{name: "newline instead of comma", in: "3:abc\n", err: ErrNetstring},
		{name: "over the limit", in: "6:abcdef,", max: 5, err: ErrTooLong},
		{name: "huge length", in: "99999999999999999999999999:", max: -1, err: ErrTooLong},
		{name: "limit checked before the data", in: "100001:", max: 100000, err: ErrTooLong},
		{name: "eof in length", in: "12", err: ErrTruncated},
		{name: "eof after colon", in: "3:", err: ErrTruncated},
		{name: "eof in data", in: "3:ab", err: ErrTruncated},
		{name: "eof before comma", in: "3:abc", err: ErrTruncated},
		{name: "good then bad", in: "1:a,1:b;", want: []string{"a"}, err: ErrNetstring},
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
				br := bufio.NewReader(r)
				max := tc.max
				if max == 0 {
					max = 1000
				}
				for _, w := range tc.want {
					got, err := ReadNetstring(br, max)
					if err != nil || string(got) != w {
						t.Fatalf("got %q, %v; want %q", got, err, w)
					}
				}
				got, err := ReadNetstring(br, max)
				if !errors.Is(err, tc.err) || got != nil {
					t.Fatalf("got %q, %v; want %v", got, err, tc.err)
				}
			})
		}
	}
}

func TestAppendNetstring(t *testing.T) {
	for in, want := range map[string]string{
		"":                        "0:,",
		"OK ":                     "3:OK ,",
		"NOTFOUND ":               "9:NOTFOUND ,",
		strings.Repeat("x", 1234): "1234:" + strings.Repeat("x", 1234) + ",",
	} {
		if got := string(AppendNetstring([]byte("pre"), []byte(in))); got != "pre"+want {
			t.Errorf("AppendNetstring(%.20q) = %.30q, want %.30q", in, got, "pre"+want)
		}
	}
}

// FuzzNetstring: ReadNetstring never panics nor reads past its limit, and
// what it accepts encodes back to the bytes it consumed.
func FuzzNetstring(f *testing.F) {
	for _, s := range []string{"0:,", "3:abc,", "1:a,2:bc,", "03:abc,", ":,", "3:ab", "99999999999999999999:", "5:a\x00:,\n,"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const max = 64
		br := bufio.NewReader(bytes.NewReader(data))
		consumed := 0
		for {
			got, err := ReadNetstring(br, max)
			if err != nil {
				if got != nil {
					t.Fatal("data and an error")
				}
				if err != io.EOF && !errors.Is(err, ErrNetstring) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if len(got) > max {
				t.Fatalf("%d bytes read, limit %d", len(got), max)
			}
			enc := AppendNetstring(nil, got)
			if !bytes.Equal(enc, data[consumed:consumed+len(enc)]) {
				t.Fatalf("read %q from %q, which encodes as %q", got, data[consumed:], enc)
			}
			consumed += len(enc)
		}
	})
}
