package delivery_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/emersion/go-message/textproto"

	"github.com/lmtpd/lmtpd/delivery"
	"github.com/lmtpd/lmtpd/protocol"
)

// memTarget is a toy delivery target: mailboxes in memory. Every
// destination of a message shares one staged copy (Group returns ""),
// which Commit appends to each mailbox; Abort drops it.
type memTarget struct {
	mu    sync.Mutex
	boxes map[string][]string // by user
}

func (m *memTarget) Kind() string { return "memory" }

// Key: one copy per user, however many addresses reach it.
func (m *memTarget) Key(d *delivery.Destination) string { return "mem\x00" + d.User }

func (m *memTarget) Group(*delivery.Destination) string { return "" }

func (m *memTarget) Stage(ctx context.Context, msg *delivery.Message, ds []*delivery.Destination, res []delivery.Result) delivery.Staged {
	var b strings.Builder
	b.Write(msg.Header(ds[0], msg.DeliveredTo(false)))
	if _, err := io.Copy(&b, msg.Body()); err != nil {
		for i := range res {
			res[i].Err = err
		}
		return nil
	}
	users := make([]string, len(ds))
	for i, d := range ds {
		users[i] = d.User
	}
	return &memStaged{t: m, users: users, text: b.String()}
}

type memStaged struct {
	t     *memTarget
	users []string
	text  string
}

func (s *memStaged) Commit(ctx context.Context, res []delivery.Result) {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	for i, u := range s.users {
		if res[i].Err == nil {
			s.t.boxes[u] = append(s.t.boxes[u], s.text)
			res[i].LogKey, res[i].LogValue = "box", u
		}
	}
}

func (s *memStaged) Abort() {}

// printStatus is a protocol.StatusSetter that prints each recipient's
// outcome.
type printStatus []string

func (p printStatus) Set(i int, err error) {
	if err != nil {
		fmt.Printf("%s: %v\n", p[i], err)
		return
	}
	fmt.Printf("%s: delivered\n", p[i])
}

// Example_target routes a domain to a target of its own: the router
// resolves, deduplicates and groups recipients, and the target stages and
// commits one copy for all of them.
func Example_target() {
	mem := &memTarget{boxes: make(map[string][]string)}
	cfg := delivery.DefaultConfig()
	cfg.DeliveredTo = delivery.DeliveredToNever
	cfg.Domains = []delivery.Domain{{
		Name:    "example.org",
		Users:   []delivery.User{{Name: "alice"}, {Name: "bob"}},
		Aliases: map[string][]string{"team": {"alice", "bob"}},
		Route:   delivery.Route{Target: mem},
	}}
	plan, err := delivery.Compile(cfg, delivery.PlanOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	r, err := delivery.New(plan, delivery.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()

	ctx := context.Background()
	conn := &protocol.ConnState{ID: "S1", Protocol: protocol.LMTP}
	from := protocol.Address{LocalPart: "carol", Domain: "example.net"}
	tx, _ := r.Mail(ctx, conn, from, &protocol.MailParams{})
	defer tx.Close()
	msg := &protocol.Message{ID: "S1.1", Conn: conn, From: from, Params: &protocol.MailParams{}}
	var names printStatus
	for _, to := range []string{"alice", "team", "nobody"} {
		rc := &protocol.Recipient{Address: protocol.Address{LocalPart: to, Domain: "example.org"}}
		if err := tx.Rcpt(ctx, rc); err != nil {
			fmt.Printf("%s: %v\n", rc.Address, err)
			continue
		}
		msg.Recipients = append(msg.Recipients, rc)
		names = append(names, rc.Address.String())
	}
	br := bufio.NewReader(strings.NewReader("Subject: hello\r\n\r\nHi!\r\n"))
	h, _ := textproto.ReadHeader(br)
	msg.SetHeader(h)
	msg.Body = br
	if err := tx.Data(ctx, msg, names); err != nil {
		fmt.Println(err)
		return
	}

	users := make([]string, 0, len(mem.boxes))
	for u := range mem.boxes {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		fmt.Printf("%s has %d message(s):\n%s", u, len(mem.boxes[u]), mem.boxes[u][0])
	}
	// Output:
	// nobody@example.org: 550 5.1.1 No such user here
	// alice@example.org: delivered
	// team@example.org: delivered
	// alice has 1 message(s):
	// Return-Path: <carol@example.net>
	// Subject: hello
	//
	// Hi!
	// bob has 1 message(s):
	// Return-Path: <carol@example.net>
	// Subject: hello
	//
	// Hi!
}
