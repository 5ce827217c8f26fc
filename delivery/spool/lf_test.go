package spool

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

// reference is the obvious, allocating conversion LFWriter must match.
func reference(p []byte) []byte { return bytes.ReplaceAll(p, []byte("\r\n"), []byte("\n")) }

func TestLFWriter(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"no line ending", "abc", "abc"},
		{"crlf", "a\r\nb\r\n", "a\nb\n"},
		{"lone lf kept", "a\nb", "a\nb"},
		{"lone cr kept", "a\rb", "a\rb"},
		{"cr cr lf", "a\r\r\nb", "a\r\nb"},
		{"trailing cr kept", "a\r", "a\r"},
		{"only crlf", "\r\n\r\n", "\n\n"},
		{"cr at start", "\rx", "\rx"},
		{"binary", "\x00\r\n\xff", "\x00\n\xff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Every split of the input into two writes, plus one byte per
			// write, must give the same result.
			for cut := 0; cut <= len(tt.in); cut++ {
				var out bytes.Buffer
				w := NewLFWriter(&out)
				for _, part := range []string{tt.in[:cut], tt.in[cut:]} {
					if n, err := w.Write([]byte(part)); err != nil || n != len(part) {
						t.Fatalf("Write(%q) = %d, %v", part, n, err)
					}
				}
				if err := w.Flush(); err != nil {
					t.Fatal(err)
				}
				if out.String() != tt.want {
					t.Errorf("cut %d: got %q, want %q", cut, out.String(), tt.want)
				}
			}
			var out bytes.Buffer
			w := NewLFWriter(&out)
			for i := 0; i < len(tt.in); i++ {
				w.Write([]byte{tt.in[i]})
			}
			w.Flush()
			if out.String() != tt.want {
				t.Errorf("byte by byte: got %q, want %q", out.String(), tt.want)
			}
			if got := string(AppendLF(nil, []byte(tt.in))); got != tt.want {
				t.Errorf("AppendLF = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLFWriterRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("\r\n\r\nab")
	for iter := 0; iter < 200; iter++ {
		in := make([]byte, r.IntN(3*lfChunk))
		for i := range in {
			in[i] = alphabet[r.IntN(len(alphabet))]
		}
		var out bytes.Buffer
		w := NewLFWriter(&out)
		for rest := in; len(rest) > 0; {
			n := min(len(rest), 1+r.IntN(lfChunk+100))
			w.Write(rest[:n])
			rest = rest[n:]
		}
		w.Flush()
		if want := reference(in); !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("iteration %d: output differs from reference (len %d vs %d)", iter, out.Len(), len(want))
		}
	}
}

func TestLFWriterError(t *testing.T) {
	boom := errors.New("boom")
	w := NewLFWriter(errWriter{boom})
	if n, err := w.Write([]byte("a\r\n")); n != 0 || !errors.Is(err, boom) {
		t.Fatalf("Write = %d, %v; want 0, boom", n, err)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, boom) {
		t.Fatalf("second Write error = %v, want sticky boom", err)
	}
	if err := w.Flush(); !errors.Is(err, boom) {
		t.Fatalf("Flush error = %v, want sticky boom", err)
	}

	// A held-back CR that cannot be written is reported by Flush.
	w = NewLFWriter(&failAfter{n: 1, err: boom})
	if _, err := w.Write([]byte("a\r")); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); !errors.Is(err, boom) {
		t.Fatalf("Flush error = %v, want boom", err)
	}

	// Reset clears the error and the held CR.
	var out bytes.Buffer
	w.Reset(&out)
	w.Write([]byte("b\r\n"))
	w.Flush()
	if out.String() != "b\n" {
		t.Fatalf("after Reset got %q", out.String())
	}
}

type errWriter struct{ err error }

func (e errWriter) Write([]byte) (int, error) { return 0, e.err }

// failAfter accepts n writes and then fails.
type failAfter struct {
	n   int
	err error
}

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n == 0 {
		return 0, f.err
	}
	f.n--
	return len(p), nil
}

func TestLFWriterNoAllocs(t *testing.T) {
	w := NewLFWriter(discard{})
	p := bytes.Repeat([]byte("a line of text\r\n"), 1000)
	w.Write(p) // allocates the scratch buffer
	if n := testing.AllocsPerRun(20, func() { w.Write(p) }); n != 0 {
		t.Errorf("Write allocates %v times per call, want 0", n)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func BenchmarkLFWriter(b *testing.B) {
	p := bytes.Repeat([]byte("a typical line of message text, about 72 characters long, in a body.\r\n"), 1024)
	w := NewLFWriter(discard{})
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		w.Write(p)
	}
}
