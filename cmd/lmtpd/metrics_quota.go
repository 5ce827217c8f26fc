package main

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lmtpd/lmtpd/delivery"
)

// quotaMetrics count quota refusals and warnings (delivery.Options.OnQuota
// and the policy listener).
type quotaMetrics struct {
	refusals *prometheus.CounterVec
	warnings prometheus.Counter
}

// newQuotaMetrics registers the quota counters on reg.
func newQuotaMetrics(reg *prometheus.Registry) *quotaMetrics {
	q := &quotaMetrics{
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lmtpd_quota_refusals_total",
			Help: "Recipients refused over quota, by stage (rcpt, data, policy) and whether the refusal was temporary (452 4.2.2) or not (552 5.2.2).",
		}, []string{"stage", "temporary"}),
		warnings: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lmtpd_quota_warnings_total", Help: "Quota warnings delivered into users' INBOX.",
		}),
	}
	reg.MustRegister(q.refusals, q.warnings)
	return q
}

// quotaEvent counts one delivery.QuotaEvent.
func (m *metrics) quotaEvent(e delivery.QuotaEvent) {
	q := m.quota
	switch e.Kind {
	case "refused":
		q.refusals.WithLabelValues(e.Stage, strconv.FormatBool(e.Temporary)).Inc()
	case "warning":
		q.warnings.Inc()
	}
}
