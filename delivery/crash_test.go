package delivery

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/protocol"
)

const crashEnv = "LMTPD_DELIVERY_CRASH_ROOT"

// crashBody is the body of message id: its length and last line let the
// checker see whether a file is whole.
func crashBody(id string, n int) string {
	var b strings.Builder
	line := "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ " + id + "\r\n"
	for b.Len() < n {
		b.WriteString(line)
	}
	b.WriteString("END " + id + "\r\n")
	return b.String()
}

func crashConfig(root string, deliveredTo bool) Config {
	cfg := DefaultConfig()
	cfg.Maildir.Root = root
	cfg.DeliveredTo = DeliveredToNever
	if deliveredTo {
		cfg.DeliveredTo = DeliveredToAlways
	}
	cfg.Spool.Threshold = 64 << 10
	var users []User
	for i := 0; i < 4; i++ {
		users = append(users, User{Name: "u" + strconv.Itoa(i)})
	}
	cfg.Domains = []Domain{{Name: "example.org", Users: users}}
	return cfg
}

// TestCrashChild is the child process of TestCrash: it delivers messages
// until it is killed, printing "OK <user> <id>" after each recipient's
// success status, which is the moment lmtpd would send 250.
func TestCrashChild(t *testing.T) {
	root := os.Getenv(crashEnv)
	if root == "" {
		t.Skip("only run as the child of TestCrash")
	}
	round := os.Getenv(crashEnv + "_ROUND")
	var out sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	println := func(s string) {
		out.Lock()
		w.WriteString(s + "\n")
		w.Flush()
		out.Unlock()
	}
	routers := []*Router{}
	for _, dt := range []bool{true, false} {
		p, err := Compile(crashConfig(root, dt), PlanOptions{})
		if err != nil {
			println("ERR " + err.Error())
			os.Exit(1)
		}
		r, err := New(p, Options{})
		if err != nil {
			println("ERR " + err.Error())
			os.Exit(1)
		}
		routers = append(routers, r)
	}
	println("READY")
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), uint64(time.Now().UnixNano())))
			for n := 0; ; n++ {
				id := fmt.Sprintf("r%s.g%d.n%d", round, g, n)
				r := routers[rng.IntN(2)]
				var rcpts []string
				for i, k := 0, 1+rng.IntN(3); i < k; i++ {
					rcpts = append(rcpts, fmt.Sprintf("u%d@example.org", rng.IntN(4)))
				}
				size := []int{200, 5000, 100_000, 400_000}[rng.IntN(4)]
				text := "Message-ID: <" + id + ">\r\nSubject: crash\r\n\r\n" + crashBody(id, size)
				ctx := context.Background()
				tx, _ := r.Mail(ctx, conn(protocol.LMTP), addr("s@example.com"), &protocol.MailParams{})
				for _, rc := range rcpts {
					tx.Rcpt(ctx, &protocol.Recipient{Address: addr(rc)})
				}
				msg := message(t, "s@example.com", rcpts, text)
				st := &reportStatus{f: func(i int, err error) {
					if err == nil {
						println("OK " + strings.TrimSuffix(rcpts[i], "@example.org") + " " + id)
					} else {
						println("FAIL " + err.Error())
					}
				}}
				tx.Data(ctx, msg, st)
				tx.Close()
			}
		})
	}
	wg.Wait()
}

type reportStatus struct{ f func(int, error) }

func (r *reportStatus) Set(i int, err error) { r.f(i, err) }

// TestCrash kills a delivering process at random points and checks that
// every delivery it reported is whole in new/ and that nothing partial is
// in new/.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	root := t.TempDir()
	rng := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	reported := map[string]bool{} // "user id"
	const rounds = 30
	for round := 0; round < rounds; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+root, crashEnv+"_ROUND="+strconv.Itoa(round))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		select {
		case l := <-lines:
			if l != "READY" {
				t.Fatalf("child: %q", l)
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatal("child did not start")
		}
		time.Sleep(time.Duration(rng.IntN(60_000)) * time.Microsecond)
		cmd.Process.Signal(syscall.SIGKILL)
		for l := range lines {
			switch {
			case strings.HasPrefix(l, "OK "):
				reported[l[3:]] = true
			case strings.HasPrefix(l, "FAIL "):
				t.Errorf("child delivery failed: %s", l)
			}
		}
		cmd.Wait()
	}
	found, litter := checkCrashMaildirs(t, root)
	missing := 0
	for k := range reported {
		if !found[k] {
			missing++
			if missing < 10 {
				t.Errorf("reported delivered but missing from new/: %s", k)
			}
		}
	}
	t.Logf("%d rounds: %d deliveries reported, %d whole files in new/, %d files left in tmp/ by kills", rounds, len(reported), len(found), litter)
	if len(reported) == 0 {
		t.Error("no delivery was reported: the kills came too early to test anything")
	}
}

var sizeInName = regexp.MustCompile(`,S=(\d+)$`)

// checkCrashMaildirs verifies every file in new/ and returns the set of
// "user id" found and the number of files in tmp/.
func checkCrashMaildirs(t *testing.T, root string) (map[string]bool, int) {
	found := map[string]bool{}
	litter := 0
	users, _ := os.ReadDir(filepath.Join(root, "example.org"))
	for _, u := range users {
		dir := filepath.Join(root, "example.org", u.Name())
		tmp, _ := os.ReadDir(filepath.Join(dir, "tmp"))
		litter += len(tmp)
		ents, _ := os.ReadDir(filepath.Join(dir, "new"))
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(dir, "new", e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			m := sizeInName.FindStringSubmatch(e.Name())
			if m == nil || m[1] != strconv.Itoa(len(b)) {
				t.Errorf("%s/new/%s: %d bytes, name says otherwise", u.Name(), e.Name(), len(b))
				continue
			}
			s := string(b)
			i := strings.Index(s, "Message-ID: <")
			if i < 0 {
				t.Errorf("%s: no Message-ID", e.Name())
				continue
			}
			id := s[i+13 : i+13+strings.IndexByte(s[i+13:], '>')]
			_, body, _ := strings.Cut(s, "\n\n")
			var want string
			for _, n := range []int{200, 5000, 100_000, 400_000} {
				if w := strings.ReplaceAll(crashBody(id, n), "\r\n", "\n"); len(w) == len(body) {
					want = w
				}
			}
			if body != want {
				t.Errorf("%s/new/%s: partial or corrupt body (%d bytes)", u.Name(), e.Name(), len(body))
				continue
			}
			found[u.Name()+" "+id] = true
		}
	}
	return found, litter
}
