package main

import (
	"strings"
	"testing"

	"github.com/lmtpd/lmtpd/delivery"
)

func TestQuotaMetrics(t *testing.T) {
	m := newMetrics()
	for _, e := range []delivery.QuotaEvent{
		{Kind: "refused", Stage: "rcpt"},
		{Kind: "refused", Stage: "rcpt"},
		{Kind: "refused", Stage: "data", Temporary: true},
		{Kind: "refused", Stage: "policy"},
		{Kind: "warning"},
	} {
		m.quotaEvent(e)
	}
	text := scrapeText(t, m)
	for _, want := range []string{
		`lmtpd_quota_refusals_total{stage="rcpt",temporary="false"} 2`,
		`lmtpd_quota_refusals_total{stage="data",temporary="true"} 1`,
		`lmtpd_quota_refusals_total{stage="policy",temporary="false"} 1`,
		`lmtpd_quota_warnings_total 1`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
