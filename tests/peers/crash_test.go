//go:build linux

package peers

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCrash delivers 200 messages from 4 clients while lmtpd is killed
// with SIGKILL at random moments and restarted. Every recipient that got
// a 250 has the message whole in new/; no file in new/ is partial; tmp/
// litter older than 36 hours is removed when lmtpd next uses the maildir,
// and newer litter stays out of new/.
func TestCrash(t *testing.T) {
	const (
		messages = 200
		clients  = 4
		maxKills = 40
		budget   = 3 * time.Minute
	)
	d := prepareDaemon(t, daemonOptions{})
	users := []string{"alice@example.test", "bob@example.test", "carol@tcp.example.test"}

	// Litter a crash long ago left in alice's tmp/, and some from just now.
	aliceTmp := filepath.Join(d.mailbox(users[0]), "tmp")
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(d.mailbox(users[0]), sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	oldLitter := filepath.Join(aliceTmp, "1000000000.M1P1.crashed")
	newLitter := filepath.Join(aliceTmp, fmt.Sprintf("%d.M1P1.crashed", time.Now().Unix()))
	for _, f := range []string{oldLitter, newLitter} {
		if err := os.WriteFile(f, []byte("Subject: partial\n\nhalf a mess"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-40 * time.Hour)
	if err := os.Chtimes(oldLitter, old, old); err != nil {
		t.Fatal(err)
	}
	d.Start()

	type job struct {
		m     testMessage
		rcpts []string // not yet acknowledged
		tries int
	}
	queue := make(chan *job, messages)
	for i := range messages {
		rcpts := []string{users[i%len(users)]}
		if i%5 == 0 { // some go to two maildirs: one spool, two files
			rcpts = append(rcpts, users[(i+1)%len(users)])
		}
		size := 200 + rand.IntN(40_000)
		if i%10 == 0 {
			size = 300_000 + rand.IntN(300_000) // beyond the in-memory spool threshold
		}
		queue <- &job{m: newMessage(fmt.Sprintf("crash-%03d", i), "sender@example.test", rcpts[0], size), rcpts: rcpts}
	}

	var (
		mu      sync.Mutex
		acked   = map[string][]string{} // message id -> recipients answered 250
		tries   = map[string]int{}      // message id -> sessions it took
		pending = messages
		done    = make(chan struct{})
		errs    []string
	)
	deadline := time.Now().Add(budget)
	var wg sync.WaitGroup
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				var j *job
				select {
				case j = <-queue:
				case <-done:
					return
				}
				if time.Now().After(deadline) || j.tries > 100 {
					mu.Lock()
					errs = append(errs, fmt.Sprintf("%s not delivered after %d tries", j.m.ID, j.tries))
					mu.Unlock()
					continue
				}
				j.tries++
				network, addr := "unix", d.Socket
				if w%2 == 1 {
					network, addr = "tcp", d.LMTPAddr
				}
				var rest []string
				c, err := tryDialWire(network, addr, 20*time.Second)
				if err == nil {
					// A send that fails part-way leaves replies
					// missing: those recipients are retried below,
					// like the ones refused.
					rr, dr, _ := c.lmtpSend("sender@example.test", j.rcpts, j.m.Wire)
					c.Close()
					k := 0
					mu.Lock()
					for i, rc := range j.rcpts {
						if i < len(rr) && rr[i].Code == 250 && k < len(dr) {
							if dr[k].Code == 250 {
								acked[j.m.ID] = append(acked[j.m.ID], rc)
							} else {
								rest = append(rest, rc)
							}
							k++
							continue
						}
						rest = append(rest, rc)
					}
					mu.Unlock()
				} else {
					rest = j.rcpts
				}
				if len(rest) > 0 {
					j.rcpts = rest
					time.Sleep(time.Duration(10+rand.IntN(40)) * time.Millisecond)
					queue <- j
					continue
				}
				mu.Lock()
				tries[j.m.ID] = j.tries
				pending--
				if pending == 0 {
					close(done)
				}
				mu.Unlock()
				// Pace the clients so that the kills fall across the run.
				time.Sleep(time.Duration(rand.IntN(80)) * time.Millisecond)
			}
		}()
	}

	// The killer: this goroutine, because Start may fail the test.
	start := time.Now()
	kills := 0
	var rssMax int64
loop:
	for kills < maxKills {
		select {
		case <-done:
			break loop
		case <-time.After(time.Duration(rand.IntN(120)) * time.Millisecond):
		}
		if time.Now().After(deadline) {
			break
		}
		_, hwm := d.memory()
		rssMax = max(rssMax, hwm)
		d.Kill()
		kills++
		d.Start()
	}
	// No more kills: let the rest through.
	select {
	case <-done:
	case <-time.After(time.Until(deadline)):
		mu.Lock()
		t.Errorf("%d messages still pending after %v", pending, budget)
		mu.Unlock()
		close(done)
	}
	wg.Wait()
	d.Stop()
	elapsed := time.Since(start)
	for _, e := range errs {
		t.Error(e)
	}

	// Every file in new/ is whole; count the copies of each message.
	copies := map[string]int{} // id + " " + recipient box
	files := 0
	for _, u := range users {
		box := d.mailbox(u)
		for _, f := range newFiles(t, box) {
			files++
			b := readFile(t, f)
			id, err := verifyDigest(b)
			if err != nil {
				t.Errorf("%s: partial or corrupt message in new/: %v", f, err)
				continue
			}
			if !strings.HasPrefix(id, "crash-") {
				t.Errorf("%s: unexpected message %q", f, id)
			}
			copies[id+" "+u]++
		}
	}
	dups := 0
	for id, rcpts := range acked {
		for _, rc := range rcpts {
			switch n := copies[id+" "+rc]; {
			case n == 0:
				t.Errorf("%s was acknowledged with 250 for %s but is not in its new/", id, rc)
			case n > 1:
				// Only a retry after a lost 250 may deliver twice.
				if tries[id] < 2 {
					t.Errorf("%s is in %s's new/ %d times but was sent once", id, rc, n)
				}
				dups += n - 1
			}
		}
	}
	if len(acked) != messages && len(errs) == 0 && !t.Failed() {
		t.Errorf("%d messages acknowledged, want %d", len(acked), messages)
	}

	// tmp/: the planted old file is gone (first use after start), the new
	// one stays; the rest is what the kills left.
	if _, err := os.Stat(oldLitter); !os.IsNotExist(err) {
		t.Errorf("tmp/ file older than 36h was not removed: %v", err)
	}
	if _, err := os.Stat(newLitter); err != nil {
		t.Errorf("recent tmp/ file was removed: %v", err)
	}
	if !d.logContains("removed tmp/ file older than the limit", filepath.Base(oldLitter)) {
		t.Errorf("lmtpd did not log removing %s", oldLitter)
	}
	litter := 0
	for _, u := range users {
		litter += len(listFiles(t, filepath.Join(d.mailbox(u), "tmp")))
	}
	t.Logf("%d messages, %d kills in %v; %d files in new/, %d duplicates (250 lost to a kill, client retried), %d files left in tmp/ (1 planted); peak RSS before a kill %d KiB",
		messages, kills, elapsed.Round(time.Millisecond), files, dups, litter, rssMax)
}
