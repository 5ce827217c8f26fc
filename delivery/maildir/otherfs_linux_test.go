package maildir

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lmtpd/lmtpd/internal/wiretest"
	"github.com/rs/zerolog"
)

// TestOtherFileSystems: on XFS and Btrfs (real ones, on loop devices),
// the default flush ("auto") chooses "fsync" and says why; files are
// staged unnamed (O_TMPFILE) and linked into new/, as on ext4; the file
// system check after each barrier passes; and concurrent deliveries, half
// of them with a hard link for a second recipient, all end whole in new/
// with nothing left in tmp/.
func TestOtherFileSystems(t *testing.T) {
	for _, tc := range []struct {
		kind string
		size int64
		mkfs []string
	}{
		// mkfs.xfs refuses file systems under 300 MiB; the image is sparse.
		{"xfs", 320 << 20, []string{"mkfs.xfs", "-q", "-f"}},
		{"btrfs", 320 << 20, []string{"mkfs.btrfs", "-q", "-f"}},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			// The kernel's, not something the tests' packages install:
			// a kernel without it skips, CI or not.
			if fss, err := os.ReadFile("/proc/filesystems"); err != nil || !strings.Contains(string(fss), "\t"+tc.kind+"\n") {
				t.Skipf("SKIPPED: this kernel has no %s (/proc/filesystems)", tc.kind)
			}
			needLoopFS(t, tc.mkfs[0])
			_, _, mnt := loopFS(t, tc.size, tc.mkfs[0], tc.mkfs[1:]...)
			root := filepath.Join(mnt, "mail")
			if err := os.Mkdir(root, 0o700); err != nil {
				t.Fatal(err)
			}
			s := newStore(t, Options{Root: root}) // Flush: FlushAuto
			var logs wiretest.LogBuffer
			ctx := zerolog.New(&logs).WithContext(context.Background())
			const senders, each = 8, 10
			var wg sync.WaitGroup
			var mu sync.Mutex
			unnamed, delivered := 0, map[string]int{}
			for g := range senders {
				wg.Go(func() {
					for i := range each {
						a := fmt.Sprintf("d/u%d", (g+i)%3)
						st, err := s.Stage(ctx, Mailbox{Path: a}, testContent)
						if err != nil {
							t.Error(err)
							return
						}
						sts := []*Staged{st}
						if i%2 == 1 {
							b := fmt.Sprintf("d/u%d", (g+i+1)%3)
							l, err := s.Link(ctx, Mailbox{Path: b}, st, testContent)
							if err != nil {
								t.Error(err)
								return
							}
							sts = append(sts, l)
						}
						mu.Lock()
						if st.anon != nil {
							unnamed++
						}
						mu.Unlock()
						for k, err := range s.Commit(ctx, sts...) {
							if err != nil {
								t.Errorf("Commit: %v", err)
								continue
							}
							mu.Lock()
							delivered[sts[k].Dir()]++
							mu.Unlock()
						}
					}
				})
			}
			wg.Wait()
			want := string(testContent.Header) + "hello\nworld\n"
			total := 0
			for box, n := range delivered {
				files := listDir(t, root, box+"/new")
				if len(files) != n {
					t.Errorf("%s/new holds %d files, want %d", box, len(files), n)
				}
				for _, f := range files {
					got, err := os.ReadFile(filepath.Join(root, box, "new", f))
					if err != nil || string(got) != want {
						t.Errorf("%s/new/%s: %q, %v", box, f, got, err)
					}
				}
				if tmp := listDir(t, root, box+"/tmp"); len(tmp) != 0 {
					t.Errorf("%s/tmp holds %v", box, tmp)
				}
				total += n
			}
			if total != senders*each*3/2 {
				t.Errorf("%d deliveries, want %d", total, senders*each*3/2)
			}
			if openat2Works() && unnamed != senders*each {
				t.Errorf("%d of %d messages staged unnamed, want all (O_TMPFILE)", unnamed, senders*each)
			}
			out := logs.String()
			if !strings.Contains(out, `use flush = \"fsync\"`) || !strings.Contains(out, tc.kind) {
				t.Errorf("want the info line choosing fsync and saying %s is why, got:\n%s", tc.kind, out)
			}
		})
	}
}
