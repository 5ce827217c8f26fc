package delivery

import (
	"context"

	"github.com/emersion/go-message/textproto"
)

// Step is a per-recipient step of delivery, run at DATA once the message
// is spooled, between the recipient's resolution (its Destinations from
// RCPT) and the grouping of destinations into Target.Stage calls: Sieve
// is one (it may file into a folder, set flags, add copies, discard or
// reject), quota or others can be more. Steps run in order, each on what
// the previous one returned, for one recipient at a time, in RCPT order;
// once a step answered for the recipient or left it no destinations, the
// later steps are not run for it.
// A Step is built once per Plan and used by many transactions at once, so
// it must be safe for concurrent use.
type Step interface {
	// Name names the step for logs ("sieve").
	Name() string
	// Apply returns what recipient rcpt (an index in m.Recipients) is
	// delivered to from now on. ds are its destinations so far; Apply may
	// return them unchanged, change their folder, flags or target, drop
	// some, or add copies. A StepResult with a non-nil Err answers for
	// the recipient: nothing is delivered to it and Err is its reply.
	// An empty Destinations with a nil Err accepts the recipient with
	// nothing stored (Sieve's discard). Apply must not keep m, ds or m's
	// readers past its return.
	Apply(ctx context.Context, m *Message, rcpt int, ds []Destination) StepResult
}

// StepResult is what a Step decided for one recipient.
type StepResult struct {
	// Destinations replace the recipient's destinations.
	Destinations []Destination
	// Err, if not nil, is the recipient's reply (a *protocol.Error);
	// Destinations are then ignored.
	Err error
	// LogKey and LogValue are added to the recipient's outcome line
	// ("sieve", "fileinto:Lists.go"); LogKey "" adds nothing.
	LogKey, LogValue string
	// Done, if set, is called once with the recipient's status (nil:
	// delivered) when it is reported: for what may only be done or
	// recorded after delivery (Sieve's redirects, vacation replies and
	// duplicate marks), so that a transaction that fails sends nothing.
	// It is not called for a transaction that ends before its outcome is
	// known (an SMTP Stage never committed).
	//
	// Done runs before the recipient's status is handed to the protocol
	// layer: in LMTP before the recipient's reply is written, in SMTP
	// before Commit returns the one reply. A non-nil error it returns
	// replaces the recipient's status; it should be a temporary
	// *protocol.Error (451 4.3.0 and the cause) for something that was
	// not done and must not be lost, so that the client retries: the
	// copies already stored for the recipient are then stored again on
	// the retry (a duplicate, never a loss).
	//
	// In SMTP, where one reply covers every recipient, Done is called with
	// nil only when every recipient is delivered and no earlier
	// recipient's Done (in RCPT order) failed; when the commit failed part
	// way (some recipients stored, the reply a 4xx and the whole message
	// resent), or an earlier recipient's Done failed, it is called with
	// that failure, so nothing is sent for an attempt the client will
	// repeat. A later recipient's Done that fails still turns the reply
	// into that failure after the earlier ones ran with nil: what those
	// sent is sent again by the resend unless the hook remembers it (Sieve
	// remembers redirects of a message with a Message-ID, redirectMemory).
	Done func(ctx context.Context, err error) error
}

// Fields returns the header of the message as received (the server's
// Received field first, Return-Path removed), for steps that read it. The
// caller must not change it.
func (m *Message) Fields() *textproto.Header { return m.hdr }

// applySteps runs the steps for every recipient on its destinations in
// in (those it does not share with an earlier recipient, see share) and
// returns their results, per recipient. It records in the delivery each
// recipient's answer from a step (nil unless a step answered), the log
// fields the steps added and their Done hooks.
func (d *delivery) applySteps(ctx context.Context, steps []Step, in [][]Destination) [][]Destination {
	n := len(d.msg.Recipients)
	rcpts := make([][]Destination, 0, n)
	for i := 0; i < n && i < len(in); i++ {
		ds := in[i]
		for _, s := range steps {
			if d.stepErr[i] != nil || len(ds) == 0 {
				break // answered, or nothing left to deliver (discard)
			}
			res := s.Apply(ctx, &d.m, i, ds)
			if res.Done != nil {
				d.stepDone[i] = append(d.stepDone[i], res.Done)
			}
			if res.LogKey != "" {
				d.stepLog[i] = append(d.stepLog[i], logField{key: res.LogKey, vals: []string{res.LogValue}})
			}
			if res.Err != nil {
				d.stepErr[i] = res.Err
				ds = nil
				break
			}
			ds = res.Destinations
			for k := range ds {
				ds[k].Target = d.t.st.target(ds[k].Target)
			}
		}
		rcpts = append(rcpts, ds)
	}
	return rcpts
}
