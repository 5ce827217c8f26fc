package result

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"testing/iotest"
)

func TestRoundTrip(t *testing.T) {
	in := []Result{
		{Scenario: "1k-c8", Server: "lmtpd", Run: 1, Proto: "lmtp", Concurrency: 8, Rcpts: 1, Size: 1024,
			Messages: 1000, Elapsed: 0.5, MsgsPerSec: 2000, ServerCPU: 0.2, CPUPer1000: 0.2, PeakRSS: 1 << 20, RSS: 1 << 19, ServerProcs: 1, ClientCPU: 0.1, OtherCPU: 0.05},
		{Scenario: "idle", Server: "dovecot", Run: 2, Idle: 10000, Errors: 3, FirstError: "421 busy"},
	}
	var buf bytes.Buffer
	for i := range in {
		if err := Write(&buf, &in[i]); err != nil {
			t.Fatal(err)
		}
	}
	buf.WriteString("\n") // a blank line is skipped
	out, err := ReadAll(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("read %d results, want %d", len(out), len(in))
	}
	for i := range in {
		if out[i] != in[i] {
			t.Errorf("result %d: got %+v, want %+v", i, out[i], in[i])
		}
	}
}

func TestReadAllErrors(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  string
	}{
		{"not json", `{"scenario":"a","server":"b"}` + "\nnot json\n", "line 2"},
		{"missing labels", `{"run":1}` + "\n", "no scenario or server"},
		{"wrong type", `{"scenario":"a","server":"b","run":"one"}` + "\n", "line 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadAll(strings.NewReader(tc.input))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	t.Run("read error", func(t *testing.T) {
		boom := errors.New("boom")
		if _, err := ReadAll(iotest.ErrReader(boom)); !errors.Is(err, boom) {
			t.Fatalf("err = %v, want %v", err, boom)
		}
	})
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteError(t *testing.T) {
	if err := Write(failWriter{}, &Result{Scenario: "a", Server: "b"}); err == nil {
		t.Fatal("no error from a failing writer")
	}
}
