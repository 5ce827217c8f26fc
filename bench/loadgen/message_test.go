package main

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// checkMessage verifies the wire form of a message of size bytes.
func checkMessage(t *testing.T, data []byte, size int64, seq uint64) {
	t.Helper()
	if int64(len(data)) != size+int64(len(terminator)) {
		t.Fatalf("length %d, want %d", len(data), size+int64(len(terminator)))
	}
	if !bytes.HasSuffix(data, []byte("\r\n"+terminator)) {
		t.Fatalf("does not end with CRLF.CRLF: %q", data[max(0, len(data)-10):])
	}
	want := fmt.Sprintf("Message-ID: <%020d@loadgen.example.org>\r\n", seq)
	if !bytes.Contains(data, []byte(want)) {
		t.Errorf("no %q", want)
	}
	lines := bytes.SplitAfter(data[:len(data)-len(terminator)], []byte("\n"))
	for i, l := range lines {
		if len(l) == 0 {
			continue
		}
		if !bytes.HasSuffix(l, []byte("\r\n")) || bytes.Count(l, []byte("\r")) != 1 || bytes.Count(l, []byte("\n")) != 1 {
			t.Fatalf("line %d %q: not one CRLF-terminated line", i, l)
		}
		if l[0] == '.' {
			t.Fatalf("line %d starts with a dot", i)
		}
		if len(l) > 1000 {
			t.Fatalf("line %d is %d bytes long", i, len(l))
		}
	}
}

func TestMessageSizes(t *testing.T) {
	sizes := []int64{minSize, minSize + 2, minSize + 3, minSize + 77, minSize + 78, minSize + 79, minSize + 80,
		minSize + 157, 1024, 100 << 10, prebuiltMax, prebuiltMax + 1, prebuiltMax + 2, prebuiltMax + 12345, 5<<20 + 79}
	for _, size := range sizes {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			m, err := newMessage(size)
			if err != nil {
				t.Fatal(err)
			}
			if streamed := m.prebuilt == nil; streamed != (size > prebuiltMax) {
				t.Errorf("streamed = %v for size %d", streamed, size)
			}
			for _, seq := range []uint64{7, 12345678901234567890} {
				var buf bytes.Buffer
				if err := m.writeTo(&buf, seq); err != nil {
					t.Fatal(err)
				}
				checkMessage(t, buf.Bytes(), size, seq)
			}
		})
	}
}

// TestStreamedEqualsPrebuilt: generating while writing gives the same
// bytes as the prebuilt message.
func TestStreamedEqualsPrebuilt(t *testing.T) {
	for _, size := range []int64{minSize, 1024, 200 << 10, prebuiltMax} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			pre, err := newMessage(size)
			if err != nil {
				t.Fatal(err)
			}
			streamed := &message{size: size, chunk: bytes.Repeat([]byte(bodyLine), chunkLines)}
			var a, b bytes.Buffer
			if err := pre.writeTo(&a, 42); err != nil {
				t.Fatal(err)
			}
			if err := streamed.writeTo(&b, 42); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a.Bytes(), b.Bytes()) {
				t.Fatal("streamed and prebuilt messages differ")
			}
		})
	}
}

func TestMessageBadSize(t *testing.T) {
	for _, size := range []int64{0, minSize - 1, minSize + 1} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			if _, err := newMessage(size); err == nil || !strings.Contains(err.Error(), "smallest") {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

// failAfter fails every write after n bytes.
type failAfter struct{ n int }

var errWrite = errors.New("write failed")

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		n := f.n
		f.n = 0
		return n, errWrite
	}
	f.n -= len(p)
	return len(p), nil
}

func TestMessageWriteErrors(t *testing.T) {
	tests := []struct {
		name  string
		size  int64
		after int
	}{
		{"prebuilt", 1024, 10},
		{"streamed header", prebuiltMax + 100, 0},
		{"streamed body", prebuiltMax + 100, 1 << 20},
		{"streamed tail", prebuiltMax + 100, prebuiltMax + 50},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := newMessage(tc.size)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.writeTo(&failAfter{n: tc.after}, 1); !errors.Is(err, errWrite) {
				t.Fatalf("err = %v, want %v", err, errWrite)
			}
		})
	}
}
