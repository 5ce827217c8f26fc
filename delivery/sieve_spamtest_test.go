package delivery

import (
	"strings"
	"testing"
)

// TestWireSieveSpamtest: over LMTP, SieveConfig.Spamtest and Virustest
// reach the scripts: spamtest :value "ge" "5" files a message scored 6.3
// of 10 into Junk, a virustest text verdict "infected" (5) is discarded,
// and a message without the fields (spamtest "0") stays in INBOX.
func TestWireSieveSpamtest(t *testing.T) {
	s := newSieveSetup(t, "u")
	s.cfg.Sieve.Spamtest = SieveScoreTest{Header: "X-Spam-Score", MaxValue: 10}
	s.cfg.Sieve.Virustest = SieveScoreTest{Header: `X-Virus-Scan: Found to be (.+)\.`, Type: ScoreTypeText, TextValues: map[string]int{"clean": 1, "infected": 5}}
	s.script(t, "u", `require ["spamtest", "virustest", "fileinto", "mailbox", "relational", "comparator-i;ascii-numeric"];
if virustest :value "eq" :comparator "i;ascii-numeric" "5" { discard; stop; }
if spamtest :value "ge" :comparator "i;ascii-numeric" "5" { fileinto :create "Junk"; }
`)
	r := s.router(t)
	for _, tc := range []struct {
		hdr         string
		junk, inbox int
	}{
		{"X-Spam-Score: 6.3\r\nX-Virus-Scan: Found to be clean.\r\n", 1, 0},
		{"X-Spam-Score: 3.0\r\n", 1, 1}, // 1 + floor(9 * 0.3) = 3
		{"", 1, 2},
		{"X-Virus-Scan: Found to be infected.\r\nX-Spam-Score: 9\r\n", 1, 2},
	} {
		got := s.lmtp(t, r, "sender@remote.test", []string{"u@example.test"}, tc.hdr+"Subject: s\r\n\r\nbody\r\n")
		if !strings.HasPrefix(got[0], "250 ") {
			t.Fatalf("%q: %s", tc.hdr, got[0])
		}
		junk, inbox := len(files(t, s.root, "example.test/u/.Junk", "new")), len(files(t, s.root, "example.test/u", "new"))
		if junk != tc.junk || inbox != tc.inbox {
			t.Errorf("after %q: Junk %d, INBOX %d; want %d, %d", tc.hdr, junk, inbox, tc.junk, tc.inbox)
		}
	}
}
