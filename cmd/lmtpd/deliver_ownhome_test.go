package main

import (
	"context"
	"errors"
	"testing"

	"github.com/lmtpd/lmtpd/delivery"
	"github.com/lmtpd/lmtpd/protocol"
)

// TestOwnHomeOnlyFailsClosed: a deliver not run as root checks that each
// recipient's home is its own before anything is delivered; when the
// recipient cannot be resolved now, it is not let through (the
// transaction's lookup could succeed a moment later and find another
// account's home): it gets the lookup's answer, 451 4.3.0 and exit 75 for
// a failed lookup, and 5.1.1 and 67 for an unknown user.
func TestOwnHomeOnlyFailsClosed(t *testing.T) {
	const uid = 1000
	rcpt := protocol.Address{LocalPart: "alice", Domain: "mx.example"}
	tests := []struct {
		name string
		err  error
		code int
		ec   protocol.EnhancedCode
		exit int
		line string
	}{
		{"lookup failed", delivery.ErrLookupFailed, 451, protocol.EnhancedCode{4, 3, 0}, exTempFail, "4.3.0 "},
		{"not a router answer", errors.New("connection refused"), 451, protocol.EnhancedCode{4, 3, 0}, exTempFail, "4.3.0 "},
		{"unknown user", delivery.ErrUnknownUser, 550, protocol.EnhancedCode{5, 1, 1}, exNoUser, "5.1.1 No such user here"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := ownHomeOnly(func(context.Context, protocol.Address) ([]delivery.Destination, error) {
				return nil, tt.err
			}, uid)
			err := check(context.Background(), rcpt)
			e := protocol.AsError(err)
			if e == nil || e.Code != tt.code || e.EnhancedCode != tt.ec {
				t.Fatalf("check: %v, want %d %v", err, tt.code, tt.ec)
			}
			st, lines := deliverOutcome([]string{rcpt.String()}, []error{err})
			if st != tt.exit || len(lines) != 1 || len(lines[0]) < len(tt.line) || lines[0][:len(tt.line)] != tt.line {
				t.Errorf("exit %d %q, want %d and %q", st, lines, tt.exit, tt.line)
			}
		})
	}
	t.Run("own home", func(t *testing.T) {
		check := ownHomeOnly(func(context.Context, protocol.Address) ([]delivery.Destination, error) {
			d := delivery.Destination{}
			d.Home, d.UID = "/home/alice", uid
			return []delivery.Destination{d}, nil
		}, uid)
		if err := check(context.Background(), rcpt); err != nil {
			t.Errorf("own home refused: %v", err)
		}
	})
	if ownHomeOnly(nil, 0) != nil {
		t.Error("root is checked")
	}
}
