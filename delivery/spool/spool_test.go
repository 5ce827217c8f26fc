package spool

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
)

func TestSpool(t *testing.T) {
	tests := []struct {
		name      string
		threshold int64
		size      int
		inMemory  bool
	}{
		{"empty", 0, 0, true},
		{"small in memory", 0, 1000, true},
		{"exactly threshold", 100, 100, true},
		{"one over threshold", 100, 101, false},
		{"large", 0, DefaultThreshold*3 + 17, false},
		{"always file", -1, 10, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			data := make([]byte, tt.size)
			for i := range data {
				data[i] = byte(i * 7)
			}
			s := New(Options{Threshold: tt.threshold, Dir: dir})
			defer s.Close()
			// Write in odd pieces so the spill happens mid-write.
			n, err := s.ReadFrom(iotest.HalfReader(bytes.NewReader(data)))
			if err != nil || n != int64(tt.size) {
				t.Fatalf("ReadFrom = %d, %v", n, err)
			}
			if s.Size() != int64(tt.size) || s.InMemory() != tt.inMemory {
				t.Fatalf("Size %d InMemory %v, want %d %v", s.Size(), s.InMemory(), tt.size, tt.inMemory)
			}
			// The temporary file has no name in dir.
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("spool dir has entries: %v", ents)
			}
			if err := iotest.TestReader(s.NewReader(), data); err != nil {
				t.Errorf("NewReader: %v", err)
			}
			var buf bytes.Buffer
			if n, err := s.WriteTo(&buf); err != nil || n != int64(tt.size) || !bytes.Equal(buf.Bytes(), data) {
				t.Errorf("WriteTo = %d, %v, equal %v", n, err, bytes.Equal(buf.Bytes(), data))
			}
			// WriteTo an *os.File (copy_file_range when spooled to a file),
			// twice, to check the offset is reset.
			for i := 0; i < 2; i++ {
				f, err := os.Create(filepath.Join(t.TempDir(), "out"))
				if err != nil {
					t.Fatal(err)
				}
				f.WriteString("hdr\n")
				if n, err := s.WriteTo(f); err != nil || n != int64(tt.size) {
					t.Fatalf("WriteTo file = %d, %v", n, err)
				}
				f.Close()
				got, _ := os.ReadFile(f.Name())
				if !bytes.Equal(got, append([]byte("hdr\n"), data...)) {
					t.Errorf("WriteTo file round %d: content differs", i)
				}
			}
		})
	}
}

func TestSpoolConcurrentReaders(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 100_000)
	s := New(Options{Dir: t.TempDir()})
	defer s.Close()
	s.Write(data)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Go(func() {
			var got []byte
			var err error
			if i%2 == 0 {
				got, err = io.ReadAll(s.NewReader())
			} else {
				var b bytes.Buffer
				_, err = s.WriteTo(&b)
				got = b.Bytes()
			}
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("reader %d: err %v, equal %v", i, err, bytes.Equal(got, data))
			}
		})
	}
	wg.Wait()
}

func TestSpoolMaxSize(t *testing.T) {
	s := New(Options{MaxSize: 10})
	defer s.Close()
	if _, err := s.Write([]byte("12345")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("123456")); !errors.Is(err, ErrTooBig) {
		t.Fatalf("Write past MaxSize: %v, want ErrTooBig", err)
	}
	if s.Size() != 5 {
		t.Fatalf("Size after refused write = %d, want 5", s.Size())
	}
}

func TestSpoolReaderError(t *testing.T) {
	boom := errors.New("connection lost")
	s := New(Options{})
	defer s.Close()
	_, err := s.ReadFrom(io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(boom)))
	if !errors.Is(err, boom) {
		t.Fatalf("ReadFrom error = %v, want the reader's error unchanged", err)
	}
}

func TestSpoolSpillErrors(t *testing.T) {
	t.Run("missing dir", func(t *testing.T) {
		s := New(Options{Threshold: 1, Dir: filepath.Join(t.TempDir(), "missing")})
		defer s.Close()
		if _, err := s.Write([]byte("ab")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Write = %v, want ErrNotExist", err)
		}
	})
	t.Run("unwritable dir", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root ignores directory permissions")
		}
		dir := t.TempDir()
		os.Chmod(dir, 0o500)
		defer os.Chmod(dir, 0o700)
		s := New(Options{Threshold: 1, Dir: dir})
		defer s.Close()
		if _, err := s.Write([]byte("ab")); !errors.Is(err, os.ErrPermission) {
			t.Fatalf("Write = %v, want ErrPermission", err)
		}
	})
}

func TestSpoolReadAt(t *testing.T) {
	for _, threshold := range []int64{0, -1} {
		s := New(Options{Threshold: threshold, Dir: t.TempDir()})
		s.Write([]byte("hello world"))
		p := make([]byte, 5)
		if n, err := s.ReadAt(p, 6); n != 5 || err != nil || string(p) != "world" {
			t.Errorf("threshold %d: ReadAt(6) = %d, %v, %q", threshold, n, err, p)
		}
		if n, err := s.ReadAt(p, 8); n != 3 || err != io.EOF {
			t.Errorf("threshold %d: short ReadAt = %d, %v; want 3, EOF", threshold, n, err)
		}
		if _, err := s.ReadAt(p, 11); err != io.EOF {
			t.Errorf("threshold %d: ReadAt at end = %v, want EOF", threshold, err)
		}
		if _, err := s.ReadAt(p, -1); err == nil {
			t.Errorf("threshold %d: negative offset accepted", threshold)
		}
		s.Close()
	}
}

func TestSpoolClosed(t *testing.T) {
	s := New(Options{Threshold: -1, Dir: t.TempDir()})
	s.Write([]byte("x"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if _, err := s.Write([]byte("x")); err != ErrClosed {
		t.Errorf("Write after Close = %v", err)
	}
	if _, err := s.ReadAt(make([]byte, 1), 0); err != ErrClosed {
		t.Errorf("ReadAt after Close = %v", err)
	}
	if _, err := s.WriteTo(io.Discard); err != ErrClosed {
		t.Errorf("WriteTo after Close = %v", err)
	}
}

func TestCreateUnlinked(t *testing.T) {
	dir := t.TempDir()
	f, err := createUnlinked(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("createUnlinked left a name: %v", ents)
	}
	if _, err := createUnlinked(filepath.Join(dir, "missing")); err == nil {
		t.Error("createUnlinked in a missing dir succeeded")
	}
}

// TestSpoolBytes: the content is exposed while in memory, not once it
// moved to a file, nor after Close.
func TestSpoolBytes(t *testing.T) {
	s := New(Options{Threshold: 8, Dir: t.TempDir()})
	defer s.Close()
	if b, ok := s.Bytes(); !ok || len(b) != 0 {
		t.Errorf("empty spool: %q, %v", b, ok)
	}
	s.Write([]byte("12345"))
	if b, ok := s.Bytes(); !ok || string(b) != "12345" {
		t.Errorf("in memory: %q, %v", b, ok)
	}
	s.Write([]byte("6789"))
	if b, ok := s.Bytes(); ok || b != nil {
		t.Errorf("in a file: %q, %v", b, ok)
	}
	m := New(Options{})
	m.Write([]byte("x"))
	m.Close()
	if b, ok := m.Bytes(); ok || b != nil {
		t.Errorf("closed: %q, %v", b, ok)
	}
}
