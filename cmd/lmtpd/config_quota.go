package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/lmtpd/lmtpd/delivery"
	"github.com/lmtpd/lmtpd/directory"
	"github.com/lmtpd/lmtpd/quota"
)

// quotaConfig is [quota] (delivery.QuotaConfig): per-user limits kept in
// the Maildir++ maildirsize that Dovecot's "maildir" quota reads too.
type quotaConfig struct {
	// Enabled turns quota on. Default false.
	Enabled bool `toml:"enabled"`
	// Storage is the default byte limit per user; 0 is unlimited.
	// Default 0.
	Storage size `toml:"storage"`
	// Messages is the default message-count limit; 0 is unlimited.
	Messages int64 `toml:"messages"`
	// Grace is "10%" of the limit, a byte count, or "0". Default "10%"
	// (Dovecot's quota_grace).
	Grace string `toml:"grace"`
	// OverQuota is "reject" (552 5.2.2) or "defer" (452 4.2.2). Default
	// "reject".
	OverQuota string `toml:"over_quota"`
	// Warnings are messages delivered once when usage crosses a
	// threshold.
	Warnings []quotaWarningConfig `toml:"warnings"`
}

// quotaWarningConfig is one of quota.warnings.
type quotaWarningConfig struct {
	// Percent is the threshold, 1 to 100, of the byte or message limit.
	Percent int `toml:"percent"`
	// Message is the file holding the warning (a message with
	// placeholders, see delivery.QuotaWarning), relative to the
	// configuration file's directory.
	Message string `toml:"message"`
}

// overQuotaModes are the values of quota.over_quota.
var overQuotaModes = []string{"reject", "defer"}

// defaultQuotaConfig returns the defaults of [quota].
func defaultQuotaConfig() quotaConfig {
	return quotaConfig{Grace: "10%", OverQuota: "reject", Warnings: []quotaWarningConfig{}}
}

// limitOf turns an optional setting into a directory.Limit.
func limitOf[T ~int64](v *T) directory.Limit {
	if v == nil {
		return directory.Limit{}
	}
	return directory.Limit{Value: int64(*v), Set: true}
}

// validateQuota checks [quota] and the quota keys of [[domain]] and
// [[domain.user]], reads the warning files and builds c.quota, which
// deliveryConfig hands to package delivery (whose own checks, the warning
// percentages among them, report at quota.* keys through deliveryKey).
func (c *config) validateQuota(ec *errorCollector) {
	q := &c.Quota
	out := delivery.QuotaConfig{
		Enabled: q.Enabled,
		Limits:  quota.Limits{Bytes: int64(q.Storage), Messages: q.Messages},
		Defer:   q.OverQuota == "defer",
	}
	if q.Messages < 0 {
		ec.addf("quota.messages", "%d: must not be negative (0 means no limit)", q.Messages)
		out.Limits.Messages = 0
	}
	g, err := quota.ParseGrace(q.Grace)
	if err != nil {
		ec.add("quota.grace", errors.New(strings.TrimPrefix(err.Error(), "quota: ")))
	}
	out.Grace = g
	oneOf(ec, "quota.over_quota", q.OverQuota, overQuotaModes)
	for i, w := range q.Warnings {
		key := indexKey("quota.warnings", i)
		qw := delivery.QuotaWarning{Percent: w.Percent}
		switch {
		case w.Message == "":
			ec.add(joinKey(key, "message"), errors.New("required: the file holding the warning message"))
		case q.Enabled:
			b, err := os.ReadFile(w.Message)
			if err != nil {
				ec.add(joinKey(key, "message"), &systemError{err})
				break
			}
			if len(strings.TrimSpace(string(b))) == 0 {
				ec.add(joinKey(key, "message"), fmt.Errorf("%s is empty", w.Message))
				break
			}
			qw.Message = b
		}
		if qw.Message == nil {
			qw.Message = []byte("-") // reported above; keeps delivery from reporting it again
		}
		out.Warnings = append(out.Warnings, qw)
	}
	for i, dm := range c.Domains {
		key := indexKey("domain", i)
		if dm.Name == "" {
			continue // delivery reports it
		}
		if dm.QuotaMessages != nil && *dm.QuotaMessages < 0 {
			ec.addf(joinKey(key, "quota_messages"), "%d: must not be negative (0 means no limit)", *dm.QuotaMessages)
		} else if dm.QuotaStorage != nil || dm.QuotaMessages != nil {
			if out.Domains == nil {
				out.Domains = make(map[string]delivery.QuotaOverride)
			}
			out.Domains[dm.Name] = delivery.QuotaOverride{Bytes: limitOf(dm.QuotaStorage), Messages: limitOf(dm.QuotaMessages)}
		}
		for j, u := range dm.User {
			if u.Name == "" {
				continue
			}
			if u.QuotaMessages != nil && *u.QuotaMessages < 0 {
				ec.addf(joinKey(indexKey(joinKey(key, "user"), j), "quota_messages"), "%d: must not be negative (0 means no limit)", *u.QuotaMessages)
				continue
			}
			if u.QuotaBytes != nil || u.QuotaMessages != nil {
				if out.Users == nil {
					out.Users = make(map[string]delivery.QuotaOverride)
				}
				out.Users[u.Name+"@"+dm.Name] = delivery.QuotaOverride{Bytes: limitOf(u.QuotaBytes), Messages: limitOf(u.QuotaMessages)}
			}
		}
	}
	c.quota = out
}
