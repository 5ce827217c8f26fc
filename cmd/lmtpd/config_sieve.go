package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/lmtpd/lmtpd/delivery"
)

// sieveConfig is [sieve]: Sieve filtering at delivery (delivery.SieveConfig
// documents each setting; config.example.toml explains them).
type sieveConfig struct {
	// Enabled turns filtering on. Default false.
	Enabled bool `toml:"enabled"`
	// Script is the user's active script, a template with {home}
	// {mailbox} {localpart} {domain} {address}. Default
	// "{home}/.dovecot.sieve"; a directory's sieve field overrides it.
	Script string `toml:"script"`
	// Before and After are the administrator's scripts or directories of
	// *.sieve run before and after the user's. Default none.
	Before []string `toml:"before"`
	After  []string `toml:"after"`
	// GlobalDir holds the scripts of include :global. Default none.
	GlobalDir string `toml:"global_dir"`
	// Sendmail is the argv that sends redirects and vacation replies, no
	// shell; {sender} and {recipient} are replaced. Default
	// ["/usr/sbin/sendmail", "-i", "-f", "{sender}", "--", "{recipient}"].
	Sendmail []string `toml:"sendmail"`
	// StateDir keeps vacation and duplicate tracking, per user. Default
	// "/var/lib/lmtpd/sieve".
	StateDir string `toml:"state_dir"`
	// MaxRedirects and MaxActions bound one run. Defaults 4 and 32.
	MaxRedirects int `toml:"max_redirects"`
	MaxActions   int `toml:"max_actions"`
	// Spamtest* and Virustest* say where spamtest and virustest (RFC
	// 5235) read the verdict of the filters before lmtpd, as
	// Pigeonhole's sieve_spamtest_* and sieve_virustest_* do
	// (delivery.SieveScoreTest). Default: not configured, the tests
	// answer "0".
	SpamtestHeader      string         `toml:"spamtest_header"`
	SpamtestType        string         `toml:"spamtest_type"`
	SpamtestMaxValue    scoreValue     `toml:"spamtest_max_value"`
	SpamtestMaxHeader   string         `toml:"spamtest_max_header"`
	SpamtestTextValues  map[string]int `toml:"spamtest_text_values"`
	VirustestHeader     string         `toml:"virustest_header"`
	VirustestType       string         `toml:"virustest_type"`
	VirustestMaxValue   scoreValue     `toml:"virustest_max_value"`
	VirustestMaxHeader  string         `toml:"virustest_max_header"`
	VirustestTextValues map[string]int `toml:"virustest_text_values"`
}

// scoreValue is a number written as an integer or with a fraction (5,
// 5.0): spamtest_max_value and virustest_max_value.
type scoreValue float64

func (n *scoreValue) decodeTOML(v any) error {
	switch x := v.(type) {
	case int64:
		*n = scoreValue(x)
	case float64:
		*n = scoreValue(x)
	default:
		return fmt.Errorf("expected a number, found %s", tomlTypeName(v))
	}
	return nil
}

// defaultSieveConfig returns [sieve]'s defaults.
func defaultSieveConfig() sieveConfig {
	return sieveConfig{
		Script:       delivery.DefaultSieveScript,
		Sendmail:     []string{"/usr/sbin/sendmail", "-i", "-f", "{sender}", "--", "{recipient}"},
		StateDir:     "/var/lib/lmtpd/sieve",
		MaxRedirects: 4,
		MaxActions:   32,
	}
}

// resolvePaths makes [sieve]'s paths absolute against the file's
// directory (the script template is left alone: it starts with a
// placeholder or must be absolute).
func (s *sieveConfig) resolvePaths(abs func(*string)) {
	for i := range s.Before {
		abs(&s.Before[i])
	}
	for i := range s.After {
		abs(&s.After[i])
	}
	abs(&s.GlobalDir)
	abs(&s.StateDir)
}

// delivery maps [sieve] onto delivery.SieveConfig; delivery.Compile
// checks it (its errors come back at "sieve.KEY", see sieveKey).
func (s *sieveConfig) delivery() delivery.SieveConfig {
	return delivery.SieveConfig{
		Enabled: s.Enabled, Script: s.Script, Before: s.Before, After: s.After, GlobalDir: s.GlobalDir,
		Sendmail: s.Sendmail, StateDir: s.StateDir, MaxRedirects: s.MaxRedirects, MaxActions: s.MaxActions,
		Spamtest: delivery.SieveScoreTest{
			Header: s.SpamtestHeader, Type: s.SpamtestType, MaxValue: float64(s.SpamtestMaxValue),
			MaxHeader: s.SpamtestMaxHeader, TextValues: s.SpamtestTextValues,
		},
		Virustest: delivery.SieveScoreTest{
			Header: s.VirustestHeader, Type: s.VirustestType, MaxValue: float64(s.VirustestMaxValue),
			MaxHeader: s.VirustestMaxHeader, TextValues: s.VirustestTextValues,
		},
	}
}

// checkSieveFile checks what only this system can say about [sieve] when
// it is enabled: the sendmail command must be an executable file and the
// global directory a directory. Scripts themselves are not required to
// exist (users add theirs later).
func (c *config) checkSieveFile(ec *errorCollector) {
	s := &c.Sieve
	if !s.Enabled {
		return
	}
	if len(s.Sendmail) > 0 && filepath.IsAbs(s.Sendmail[0]) {
		if fi, err := os.Stat(s.Sendmail[0]); err != nil {
			ec.addf("sieve.sendmail", "%v (redirect and vacation send mail with it)", err)
		} else if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			ec.addf("sieve.sendmail", "%s is not an executable file", s.Sendmail[0])
		}
	}
	if s.GlobalDir != "" {
		if fi, err := os.Stat(s.GlobalDir); err == nil && !fi.IsDir() {
			ec.addf("sieve.global_dir", "%s is not a directory", s.GlobalDir)
		}
	}
}

// sieveKey turns the key path of a delivery.ConfigError about the Sieve
// settings ({"sieve", "before", "1"}) into the file's key
// (sieve.before[1]).
func sieveKey(path []string) string {
	key := "sieve"
	for _, el := range path[1:] {
		if n, err := strconv.Atoi(el); err == nil {
			key = indexKey(key, n)
			continue
		}
		key = joinKey(key, snakeCase(el))
	}
	return key
}
