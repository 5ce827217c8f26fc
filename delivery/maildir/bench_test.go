package maildir

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/delivery/spool"
)

var benchSizes = []struct {
	name string
	n    int
}{{"1KiB", 1 << 10}, {"1MiB", 1 << 20}}

func benchSpool(b *testing.B, n int) *spool.Spool {
	sp := spool.New(spool.Options{Dir: b.TempDir()})
	b.Cleanup(func() { sp.Close() })
	sp.Write(bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n"), n/64))
	return sp
}

var header = []byte("Return-Path: <a@example.org>\nReceived: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\nSubject: bench\n\n")

// BenchmarkBaseline is the plain durable write: create, write, fsync,
// rename, with and without the fsync of the target directory that makes
// the rename durable.
func BenchmarkBaseline(b *testing.B) {
	for _, sz := range benchSizes {
		for _, dirsync := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/dirsync=%v", sz.name, dirsync), func(b *testing.B) {
				dir := b.TempDir()
				os.Mkdir(filepath.Join(dir, "tmp"), 0o700)
				os.Mkdir(filepath.Join(dir, "new"), 0o700)
				data := append(append([]byte{}, header...), bytes.Repeat([]byte("x"), sz.n)...)
				i := 0
				for b.Loop() {
					i++
					name := strconv.Itoa(i)
					f, err := os.OpenFile(filepath.Join(dir, "tmp", name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
					if err != nil {
						b.Fatal(err)
					}
					f.Write(data)
					f.Sync()
					f.Close()
					if err := os.Rename(filepath.Join(dir, "tmp", name), filepath.Join(dir, "new", name)); err != nil {
						b.Fatal(err)
					}
					if dirsync {
						d, _ := os.Open(filepath.Join(dir, "new"))
						d.Sync()
						d.Close()
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			})
		}
	}
}

// BenchmarkDeliver stages a message for 1 or 5 recipients (different
// maildirs) and commits it: with hard links (identical bytes) or one copy
// per recipient (a per-recipient Delivered-To).
func BenchmarkDeliver(b *testing.B) {
	for _, sz := range benchSizes {
		for _, rcpts := range []int{1, 5} {
			for _, mode := range []string{"link", "copy"} {
				if rcpts == 1 && mode == "copy" {
					continue
				}
				b.Run(fmt.Sprintf("%s/rcpts=%d/%s", sz.name, rcpts, mode), func(b *testing.B) {
					sp := benchSpool(b, sz.n)
					s := newStore(b, Options{Root: b.TempDir()})
					ctx := context.Background()
					mbs := make([]Mailbox, rcpts)
					hdrs := make([][]byte, rcpts)
					for i := range mbs {
						mbs[i] = Mailbox{Path: "example.org/user" + strconv.Itoa(i)}
						hdrs[i] = append([]byte("Delivered-To: user"+strconv.Itoa(i)+"@example.org\n"), header...)
					}
					sts := make([]*Staged, rcpts)
					for b.Loop() {
						for i, mb := range mbs {
							var err error
							switch {
							case mode == "copy":
								sts[i], err = s.Stage(ctx, mb, Content{Header: hdrs[i], Body: sp})
							case i == 0:
								sts[i], err = s.Stage(ctx, mb, Content{Header: header, Body: sp})
							default:
								sts[i], err = s.Link(ctx, mb, sts[0], Content{Header: header, Body: sp})
							}
							if err != nil {
								b.Fatal(err)
							}
						}
						for _, err := range s.Commit(ctx, sts...) {
							if err != nil {
								b.Fatal(err)
							}
						}
					}
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
				})
			}
		}
	}
}

// BenchmarkDeliverParallel delivers 1 KiB messages from many goroutines
// into one maildir, where group commit shares the fsyncs of new/.
func BenchmarkDeliverParallel(b *testing.B) {
	sp := benchSpool(b, 1<<10)
	s := newStore(b, Options{Root: b.TempDir()})
	ctx := context.Background()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Deliver(ctx, Mailbox{Path: "example.org/user"}, Content{Header: header, Body: sp}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkBaselineParallel is the same load without group commit: every
// delivery fsyncs new/ itself.
func BenchmarkBaselineParallel(b *testing.B) {
	dir := b.TempDir()
	os.Mkdir(filepath.Join(dir, "tmp"), 0o700)
	os.Mkdir(filepath.Join(dir, "new"), 0o700)
	data := append(append([]byte{}, header...), bytes.Repeat([]byte("x"), 1<<10)...)
	var n atomic.Int64
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			name := strconv.FormatInt(n.Add(1), 10)
			f, _ := os.OpenFile(filepath.Join(dir, "tmp", name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			f.Write(data)
			f.Sync()
			f.Close()
			os.Rename(filepath.Join(dir, "tmp", name), filepath.Join(dir, "new", name))
			d, _ := os.Open(filepath.Join(dir, "new"))
			d.Sync()
			d.Close()
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkInterleaved runs one operation of each kind per iteration, in
// turn, and reports the median time of each: on a shared disk whose speed
// drifts, medians of interleaved runs compare better than separate
// benchmarks. base is create+write+fsync+rename+fsync(new/), d1 a Store
// delivery to one recipient, d5link and d5copy five recipients with hard
// links or separate copies.
func BenchmarkInterleaved(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			sp := benchSpool(b, sz.n)
			s := newStore(b, Options{Root: b.TempDir()})
			ctx := context.Background()
			dir := b.TempDir()
			os.Mkdir(filepath.Join(dir, "tmp"), 0o700)
			os.Mkdir(filepath.Join(dir, "new"), 0o700)
			data := make([]byte, 0, len(header)+int(sp.Size()))
			data = append(data, header...)
			var buf bytes.Buffer
			sp.WriteTo(&buf)
			data = append(data, buf.Bytes()...)
			mbs := make([]Mailbox, 5)
			hdrs := make([][]byte, 5)
			for i := range mbs {
				mbs[i] = Mailbox{Path: "example.org/user" + strconv.Itoa(i)}
				hdrs[i] = append([]byte("Delivered-To: user"+strconv.Itoa(i)+"@example.org\n"), header...)
			}
			var times [4][]time.Duration
			n := 0
			for b.Loop() {
				n++
				t0 := time.Now()
				name := strconv.Itoa(n)
				f, _ := os.OpenFile(filepath.Join(dir, "tmp", name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				f.Write(data)
				f.Sync()
				f.Close()
				os.Rename(filepath.Join(dir, "tmp", name), filepath.Join(dir, "new", name))
				d, _ := os.Open(filepath.Join(dir, "new"))
				d.Sync()
				d.Close()
				times[0] = append(times[0], time.Since(t0))

				t0 = time.Now()
				if _, err := s.Deliver(ctx, mbs[0], Content{Header: header, Body: sp}); err != nil {
					b.Fatal(err)
				}
				times[1] = append(times[1], time.Since(t0))

				for v, link := range []bool{true, false} {
					t0 = time.Now()
					sts := make([]*Staged, 5)
					for i, mb := range mbs {
						var err error
						if link && i > 0 {
							sts[i], err = s.Link(ctx, mb, sts[0], Content{Header: header, Body: sp})
						} else if link {
							sts[i], err = s.Stage(ctx, mb, Content{Header: header, Body: sp})
						} else {
							sts[i], err = s.Stage(ctx, mb, Content{Header: hdrs[i], Body: sp})
						}
						if err != nil {
							b.Fatal(err)
						}
					}
					for _, err := range s.Commit(ctx, sts...) {
						if err != nil {
							b.Fatal(err)
						}
					}
					times[2+v] = append(times[2+v], time.Since(t0))
				}
			}
			for i, name := range []string{"base", "d1", "d5link", "d5copy"} {
				ts := times[i]
				slices.Sort(ts)
				b.ReportMetric(float64(ts[len(ts)/2].Microseconds())/1000, name+"-ms")
			}
		})
	}
}

// BenchmarkDeliverPlaces delivers 1 KiB messages into a maildir under the
// root (os.Root), the same with an owner and modes (an fchown and an
// fchmod per file), and into a home (HomeFS: the home opened and the path
// resolved without links for every operation), to show what safety in a
// user's home costs.
func BenchmarkDeliverPlaces(b *testing.B) {
	sp := benchSpool(b, 1<<10)
	uid, gid := os.Getuid(), os.Getgid() // chown to ourselves works unprivileged
	for _, c := range []struct {
		name string
		opts Options
		mb   func(dir string) Mailbox
	}{
		{"root", Options{}, func(string) Mailbox { return Mailbox{Path: "example.org/user"} }},
		{"root-owner", Options{Owner: &Owner{UID: uid, GID: gid}, FileMode: 0o640, DirMode: 0o750}, func(string) Mailbox { return Mailbox{Path: "example.org/user"} }},
		{"home", Options{}, func(dir string) Mailbox {
			return Mailbox{Home: dir, Path: "Maildir", Owner: &Owner{UID: uid, GID: gid}}
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			c.opts.Root = b.TempDir()
			s := newStore(b, c.opts)
			mb := c.mb(b.TempDir())
			ctx := context.Background()
			for b.Loop() {
				if _, err := s.Deliver(ctx, mb, Content{Header: header, Body: sp}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
