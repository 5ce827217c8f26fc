package delivery

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/protocol"
)

// TestPipeConcurrencyLimit: many sessions delivering to one pipe route at
// once never run more than its MaxProcesses commands together; the others
// wait in line, and past MaxWait they are deferred with 451 4.3.2. Real
// commands count themselves in a directory; the assertion is on counts.
func TestPipeConcurrencyLimit(t *testing.T) {
	tests := []struct {
		name      string
		sessions  int
		max       int
		wait      time.Duration
		sleep     string
		wantBusy  bool // some sessions are deferred
		wantAllOK bool
	}{
		{"queued within the wait", 12, 3, 30 * time.Second, "0.1", false, true},
		{"deferred past the wait", 8, 2, 100 * time.Millisecond, "1", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			running := t.TempDir()
			peak := filepath.Join(t.TempDir(), "peak")
			cfg := testConfig(root)
			rt := sh(`touch "$1/$$"; ls "$1" | wc -l >> "$2"; sleep `+tt.sleep+`; rm -f "$1/$$"`, false, running, peak)
			rt.Pipe.MaxProcesses, rt.Pipe.MaxWait = tt.max, tt.wait
			cfg.Domains = append(cfg.Domains, Domain{Name: "cmd.example", Route: rt, Users: []User{{Name: "u"}}})
			r := newRouter(t, cfg, Options{})
			var wg sync.WaitGroup
			errs := make([]error, tt.sessions)
			for i := range tt.sessions {
				wg.Add(1)
				go func() {
					defer wg.Done()
					st, _, err := run(t, testCtx(t, nil), r, protocol.LMTP, "s@example.test", []string{"u@cmd.example"}, testText)
					if err != nil {
						errs[i] = err
						return
					}
					errs[i], _ = st.get(0)
				}()
			}
			wg.Wait()
			ok, busy := 0, 0
			for _, err := range errs {
				switch pe := protocol.AsError(err); {
				case err == nil:
					ok++
				case pe != nil && pe.Code == 451 && pe.EnhancedCode == (protocol.EnhancedCode{4, 3, 2}):
					busy++
				default:
					t.Errorf("unexpected outcome %v", err)
				}
			}
			b, err := os.ReadFile(peak)
			if err != nil {
				t.Fatal(err)
			}
			counts := strings.Fields(string(b))
			if len(counts) != ok {
				t.Errorf("%d commands ran, %d deliveries succeeded", len(counts), ok)
			}
			for _, c := range counts {
				if n, _ := strconv.Atoi(c); n > tt.max {
					t.Errorf("%d commands ran at once, limit %d", n, tt.max)
				}
			}
			if tt.wantAllOK && ok != tt.sessions {
				t.Errorf("%d of %d delivered, %d deferred", ok, tt.sessions, busy)
			}
			if tt.wantBusy && (busy == 0 || ok < tt.max) {
				t.Errorf("%d delivered, %d deferred with 4.3.2; want at least %d delivered and some deferred", ok, busy, tt.max)
			}
			if n := boundPipe(r, "cmd.example").limiter.InUse(); n != 0 {
				t.Errorf("%d slots still taken", n)
			}
		})
	}
}

// TestPipeLimiterAcrossReload: a reload that keeps a pipe route's place
// and limits keeps its Limiter, so runs in flight still count; changed
// limits get a new one.
func TestPipeLimiterAcrossReload(t *testing.T) {
	root := t.TempDir()
	cfg := testConfig(root)
	rt := sh("true", false)
	rt.Pipe.MaxProcesses = 4
	cfg.Domains = append(cfg.Domains, Domain{Name: "cmd.example", Route: rt, Users: []User{{Name: "u"}}})
	r := newRouter(t, cfg, Options{})
	lim := func() any { return boundPipe(r, "cmd.example").limiter }
	before := lim()
	if err := reloadConfig(r, cfg); err != nil {
		t.Fatal(err)
	}
	if lim() != before {
		t.Error("an unchanged route got a new Limiter on reload")
	}
	rt2 := sh("true", false)
	rt2.Pipe.MaxProcesses = 5
	cfg.Domains[len(cfg.Domains)-1].Route = rt2
	if err := reloadConfig(r, cfg); err != nil {
		t.Fatal(err)
	}
	if lim() == before {
		t.Error("a changed limit kept the old Limiter")
	}
	rt2.Pipe.MaxProcesses = -1
	if err := reloadConfig(r, cfg); err == nil || !strings.Contains(err.Error(), "max processes -1 is negative") {
		t.Errorf("Reload with a negative limit: %v", err)
	}
}
