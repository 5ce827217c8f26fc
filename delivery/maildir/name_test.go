package maildir

import (
	"os"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestUniqueNames(t *testing.T) {
	u := NewUniqueNames("host")
	now := time.Unix(1700000000, 42_123_456)
	re := regexp.MustCompile(`^1700000000\.M42123P` + strconv.Itoa(os.Getpid()) + `Q(\d+)\.host$`)
	seen := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Go(func() {
			for j := 0; j < 100; j++ {
				n := u.Next(now)
				if !re.MatchString(n) {
					t.Errorf("name %q does not match %s", n, re)
				}
				mu.Lock()
				if seen[n] {
					t.Errorf("duplicate name %q", n)
				}
				seen[n] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if d := NewUniqueNames(""); d.host == "" {
		t.Error("default host name is empty")
	}
}

func TestEscapeHost(t *testing.T) {
	for in, want := range map[string]string{
		"mx.example.org": "mx.example.org",
		"a/b:c":          `a\057b\072c`,
		`a\057`:          `a\134057`,
	} {
		if got := EscapeHost(in); got != want {
			t.Errorf("EscapeHost(%q) = %q, want %q", in, got, want)
		}
	}
}
