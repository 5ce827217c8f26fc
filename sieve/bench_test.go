package sieve

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// typicalScript is a 30-rule user script of the kind the bench
// target names: mailing lists, spam, a vacation.
const typicalScript = `require ["fileinto", "envelope", "subaddress", "variables", "imap4flags",
  "relational", "comparator-i;ascii-numeric", "vacation", "body", "regex", "mailbox"];
if header :contains "X-Spam-Flag" "YES" { fileinto "Junk"; stop; }
if header :value "ge" :comparator "i;ascii-numeric" "X-Spam-Score" "5" { fileinto "Junk"; stop; }
if address :domain :is "from" ["spam.example", "junk.example"] { discard; stop; }
if header :matches "List-Id" "*<*.lists.example.org>" { fileinto :create "Lists.${2}"; stop; }
if header :contains "List-Id" "golang-nuts" { fileinto "Lists.go"; stop; }
if header :contains "List-Id" "rust-users" { fileinto "Lists.rust"; stop; }
if header :contains "List-Id" "postfix-users" { fileinto "Lists.postfix"; stop; }
if header :contains "List-Id" "dovecot" { fileinto "Lists.dovecot"; stop; }
if header :contains "List-Id" "debian-devel" { fileinto "Lists.debian"; stop; }
if envelope :detail "to" "shop" { fileinto "Shopping"; stop; }
if envelope :detail "to" "bank" { addflag "\\Flagged"; fileinto "Bank"; stop; }
if address :is "from" "boss@example.com" { addflag "\\Flagged"; }
if address :domain :is "from" "github.com" { fileinto "GitHub"; stop; }
if address :domain :is "from" "gitlab.com" { fileinto "GitLab"; stop; }
if header :contains "subject" "[JIRA]" { fileinto "Jira"; stop; }
if header :regex "subject" "^\\[ticket #[0-9]+\\]" { fileinto "Tickets"; stop; }
if header :contains "subject" "invoice" { fileinto "Invoices"; }
if header :contains "subject" "receipt" { fileinto "Invoices"; }
if header :is "Precedence" "bulk" { fileinto "Bulk"; stop; }
if exists "X-Mailchimp-Campaign" { fileinto "Newsletters"; stop; }
if header :contains "from" "newsletter" { fileinto "Newsletters"; stop; }
if header :contains "from" "noreply" { fileinto "Notifications"; stop; }
if header :contains "from" "no-reply" { fileinto "Notifications"; stop; }
if address :localpart :is "to" "root" { fileinto "System"; stop; }
if header :contains "subject" "cron" { fileinto "System"; stop; }
if size :over 10M { fileinto "Large"; }
if header :count "gt" :comparator "i;ascii-numeric" "received" "20" { fileinto "Loops"; stop; }
if body :contains "unsubscribe" { fileinto "Maybe-lists"; stop; }
vacation :days 7 :subject "Away" :addresses ["user@example.net"] "I am away until Monday.";
keep;
`

const benchMessage = "Return-Path: <friend@example.org>\r\n" +
	"Received: from mx.example.org by mail.example.net; Tue, 1 Apr 2025 10:00:00 +0200\r\n" +
	"Received: from client by mx.example.org; Tue, 1 Apr 2025 09:59:59 +0200\r\n" +
	"From: Friend <friend@example.org>\r\n" +
	"To: User <user@example.net>\r\n" +
	"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= and a question\r\n" +
	"Date: Tue, 1 Apr 2025 10:00:00 +0200\r\n" +
	"Message-ID: <bench@example.org>\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Hello, how are you? This is a plain personal message of a few lines.\r\n" +
	"It has nothing to do with lists or spam.\r\n"

// BenchmarkCompile measures compiling the typical script (a cache miss).
func BenchmarkCompile(b *testing.B) {
	src := []byte(typicalScript)
	for b.Loop() {
		if _, err := Compile("bench", src, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExecute measures one run of the cached typical script against a
// personal message, which passes every rule (the worst case for CPU).
func BenchmarkExecute(b *testing.B) {
	s, err := Compile("bench", []byte(typicalScript), nil)
	if err != nil {
		b.Fatal(err)
	}
	msg := ParseMessage([]byte(benchMessage))
	env := &Env{
		Envelope: Envelope{From: "friend@example.org", To: "user@example.net"},
		Now:      time.Date(2025, 4, 1, 12, 0, 0, 0, time.UTC),
		Tracker:  &fakeTracker{},
	}
	b.ReportAllocs()
	for b.Loop() {
		env.Tracker = &fakeTracker{}
		res, err := s.Execute(context.Background(), msg, env, nil)
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Actions) != 2 {
			b.Fatalf("actions %v", res.Lines())
		}
	}
}

// listsScript is the script of delivery's BenchmarkSieveDelivery: twenty
// list rules in a row, spam, flagged senders, a vacation.
func listsScript() string {
	var b strings.Builder
	b.WriteString(`require ["fileinto", "mailbox", "imap4flags", "vacation", "variables", "envelope", "subaddress", "regex"];` + "\n")
	b.WriteString(`if header :contains "X-Spam-Flag" "YES" { fileinto :create "Junk"; stop; }` + "\n")
	b.WriteString(`if header :regex "X-Spam-Score" "^[1-9][0-9]" { fileinto :create "Junk"; stop; }` + "\n")
	for i := range 20 {
		fmt.Fprintf(&b, "if header :contains \"List-Id\" \"list%d.lists.example.org\" { fileinto :create \"Lists.list%d\"; stop; }\n", i, i)
	}
	for i := range 5 {
		fmt.Fprintf(&b, "if address :is \"from\" \"boss%d@example.org\" { addflag \"\\\\Flagged\"; }\n", i)
	}
	b.WriteString(`if envelope :detail "to" "shop" { fileinto :create "Shopping"; stop; }` + "\n")
	b.WriteString(`if header :matches "Subject" "*[urgent]*" { addflag "$Urgent"; }` + "\n")
	b.WriteString(`vacation :days 7 :addresses ["bob@example.org"] :subject "Away" "I am away.";` + "\n")
	return b.String()
}

// seenTracker answers every key as seen, as delivery's state directory
// does for a sender answered already.
type seenTracker struct{}

func (seenTracker) Seen(context.Context, string, time.Duration) (bool, error) { return true, nil }

// BenchmarkExecuteLists measures the interpreter's part of delivery's
// BenchmarkSieveDelivery: the lists script against a personal message
// whose sender was answered already (an implicit keep).
func BenchmarkExecuteLists(b *testing.B) {
	s, err := Compile("bench", []byte(listsScript()), nil)
	if err != nil {
		b.Fatal(err)
	}
	msg := ParseMessage([]byte("Received: from mx.example.org by mail.example.org; Tue, 1 Apr 2025 10:00:00 +0200\r\n" +
		"From: someone@remote.test\r\nTo: bob@example.org\r\nSubject: hello\r\nMessage-ID: <x@remote.test>\r\n\r\nbody\r\n"))
	env := &Env{
		Envelope:      Envelope{From: "someone@remote.test", To: "bob@example.org"},
		Now:           time.Date(2025, 4, 1, 12, 0, 0, 0, time.UTC),
		Environment:   map[string]string{"domain": "example.org", "host": "mail.example.org", "phase": "during"},
		Tracker:       seenTracker{},
		UserAddresses: []string{"bob@example.org", "bob@example.org"},
	}
	b.ReportAllocs()
	for b.Loop() {
		res, err := s.Execute(context.Background(), msg, env, nil)
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Actions) != 0 || !res.ImplicitKeep {
			b.Fatalf("actions %v", res.Lines())
		}
	}
}
