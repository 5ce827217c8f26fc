package main

import (
	"fmt"
	"time"

	"github.com/lmtpd/lmtpd/delivery"
)

// lmtpConfig is a route's lmtp table, route = { lmtp = { address = ... } },
// and [delivery.forward], the settings of the servers directory records
// name in their forward field (delivery.LMTP).
type lmtpConfig struct {
	Address        string   `toml:"address"`
	MaxConnections int      `toml:"max_connections"`
	MaxWait        duration `toml:"max_wait"`
	ConnectTimeout duration `toml:"connect_timeout"`
	Timeout        duration `toml:"timeout"`
	IdleTimeout    duration `toml:"idle_timeout"`
}

// setDefaults gives a new lmtp table the documented defaults.
func (l *lmtpConfig) setDefaults() {
	*l = defaultLMTPConfig()
}

func defaultLMTPConfig() lmtpConfig {
	return lmtpConfig{
		MaxConnections: delivery.DefaultRemoteMaxConnections,
		MaxWait:        duration(delivery.DefaultRemoteMaxWait),
		ConnectTimeout: duration(delivery.DefaultRemoteConnectTimeout),
		Timeout:        duration(delivery.DefaultRemoteTimeout),
		IdleTimeout:    duration(delivery.DefaultRemoteIdleTimeout),
	}
}

// lmtp maps the table onto a delivery.LMTP.
func (l *lmtpConfig) lmtp() delivery.LMTP {
	return delivery.LMTP{
		Address:        l.Address,
		MaxConnections: l.MaxConnections,
		MaxWait:        time.Duration(l.MaxWait),
		ConnectTimeout: time.Duration(l.ConnectTimeout),
		Timeout:        time.Duration(l.Timeout),
		IdleTimeout:    time.Duration(l.IdleTimeout),
	}
}

// checkLMTPFile refuses the zero values that package delivery would take
// for "the default" but that the file, which writes its defaults out,
// does not mean: a limit of 0 connections or a zero timeout. Negative
// values are delivery's to refuse.
func checkLMTPFile(ec *errorCollector, key string, l *lmtpConfig) {
	if l.MaxConnections == 0 {
		ec.add(joinKey(key, "max_connections"), fmt.Errorf("%d: want at least 1", l.MaxConnections))
	}
	for _, d := range []struct {
		k string
		v duration
	}{{"max_wait", l.MaxWait}, {"connect_timeout", l.ConnectTimeout}, {"timeout", l.Timeout}, {"idle_timeout", l.IdleTimeout}} {
		if d.v == 0 {
			ec.add(joinKey(key, d.k), fmt.Errorf("%v: want a positive duration", time.Duration(d.v)))
		}
	}
}

// checkRemoteFile makes checkLMTPFile's checks on [delivery.forward] and
// every route's lmtp table.
func (c *config) checkRemoteFile(ec *errorCollector) {
	checkLMTPFile(ec, "delivery.forward", &c.Delivery.Forward)
	eachRoute(c.Domains, func(key string, r routeConfig) {
		if r.LMTP != nil {
			checkLMTPFile(ec, joinKey(key, "lmtp"), r.LMTP)
		}
	})
}
