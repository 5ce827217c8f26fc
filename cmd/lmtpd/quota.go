package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/lmtpd/lmtpd/delivery"
	"github.com/lmtpd/lmtpd/protocol"
)

const quotaUsage = "lmtpd quota [-config FILE] [-json] [-recalc] ADDRESS...\n\n" +
	"Prints each address's mailbox usage and limits, from the maildirsize file\n" +
	"that lmtpd and Dovecot keep (recalculated first when it is missing or\n" +
	"stale). -recalc rescans the maildirs and rewrites maildirsize. Exit status\n" +
	"0 when every address was answered, 67 when one is unknown, 75 when one\n" +
	"could not be read, 78 for a configuration error."

// quotaReport is one line of "lmtpd quota": one maildir of an address.
type quotaReport struct {
	Address       string `json:"address"`
	Destination   string `json:"destination,omitempty"` // an alias's target
	Maildir       string `json:"maildir,omitempty"`
	Bytes         int64  `json:"bytes"`
	Messages      int64  `json:"messages"`
	LimitBytes    int64  `json:"limit_bytes"`    // 0: unlimited
	LimitMessages int64  `json:"limit_messages"` // 0: unlimited
	OverQuota     bool   `json:"over_quota"`
	Error         string `json:"error,omitempty"`
}

func cmdQuota(args []string, stdout io.Writer, stderr *os.File) int {
	fs := newFlagSet("quota", quotaUsage, stderr)
	file := fs.String("config", "", "configuration `file` (default: the embedded one)")
	asJSON := fs.Bool("json", false, "print one JSON object per maildir")
	recalc := fs.Bool("recalc", false, "recalculate maildirsize from the maildirs first")
	if st := parseFlags(fs, args); st >= 0 {
		return st
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exUsage
	}
	cfg, err := loadConfig(*file)
	if err != nil {
		printConfigError(stderr, err)
		return exConfig
	}
	if !cfg.Quota.Enabled {
		fmt.Fprintf(stderr, "lmtpd quota: %s: quota is not enabled ([quota] enabled = true)\n", cfg.file)
		return exConfig
	}
	router, err := delivery.New(cfg.plan, delivery.Options{QuotaFileMode: 0o600})
	if err != nil {
		fmt.Fprintf(stderr, "lmtpd quota: %v\n", err)
		return exTempFail
	}
	defer router.Close()
	status := exOK
	enc := json.NewEncoder(stdout)
	for _, arg := range fs.Args() {
		reps, st := quotaOf(router, arg, *recalc)
		if st != exOK && (status == exOK || st == exTempFail) {
			status = st
		}
		for _, r := range reps {
			if *asJSON {
				enc.Encode(r)
				continue
			}
			fmt.Fprintln(stdout, r.text())
		}
	}
	return status
}

// quotaOf reports one address.
func quotaOf(router *delivery.Router, arg string, recalc bool) ([]quotaReport, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, ok := policyAddress(strings.Trim(arg, "<>"))
	if !ok {
		return []quotaReport{{Address: arg, Error: "not an address local@domain"}}, exUsage
	}
	sts, err := router.Quota(ctx, a, 0, recalc)
	if err != nil {
		st := exTempFail
		if pe := protocol.AsError(err); pe != nil && !pe.Temporary() {
			st = protocol.ExitNoUser
		}
		msg := err.Error()
		if errors.Unwrap(err) != nil {
			msg = errors.Unwrap(err).Error()
		}
		return []quotaReport{{Address: arg, Error: msg}}, st
	}
	if len(sts) == 0 {
		return []quotaReport{{Address: arg, Error: "no quota (unlimited, or not delivered to a maildir)"}}, exOK
	}
	var out []quotaReport
	for _, s := range sts {
		r := quotaReport{Address: arg, Maildir: s.Maildir, Bytes: s.Usage.Bytes, Messages: s.Usage.Messages,
			LimitBytes: s.Limits.Bytes, LimitMessages: s.Limits.Messages, OverQuota: s.Err != nil}
		if !strings.EqualFold(s.Address, arg) {
			r.Destination = s.Address
		}
		out = append(out, r)
	}
	return out, exOK
}

// text is the human form: address, usage of limits, maildir.
func (r quotaReport) text() string {
	if r.Error != "" {
		return fmt.Sprintf("%s: %s", r.Address, r.Error)
	}
	of := func(v, limit int64, unit string) string {
		if limit <= 0 {
			return fmt.Sprintf("%d%s (unlimited)", v, unit)
		}
		return fmt.Sprintf("%d of %d%s (%d%%)", v, limit, unit, v*100/limit)
	}
	who := r.Address
	if r.Destination != "" {
		who += " -> " + r.Destination
	}
	s := fmt.Sprintf("%s: storage %s, messages %s, maildir %s", who,
		of(r.Bytes, r.LimitBytes, " bytes"), of(r.Messages, r.LimitMessages, ""), r.Maildir)
	if r.OverQuota {
		s += ", over quota"
	}
	return s
}
