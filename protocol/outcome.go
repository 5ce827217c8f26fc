package protocol

import (
	"context"
	"errors"
	"time"

	"github.com/rs/zerolog"
)

// Outcome is what became of one recipient of one message: the record
// Server.OnOutcome receives.
type Outcome struct {
	// Conn is the connection the message came in on.
	Conn *ConnState
	// MessageID is the transaction id (Message.ID).
	MessageID string
	// From is the reverse-path; To the recipient.
	From Address
	To   *Recipient
	// Err is nil when the recipient was delivered. Otherwise it is the
	// status the backend (or the server) gave, and Reply the reply the
	// client got for it (for a status that is not an *Error, the generic
	// temporary failure).
	Err   error
	Reply *Error
	// Duration is the time from the start of the message transfer to the
	// outcome.
	Duration time.Duration
}

// Temporary reports whether the recipient was deferred (a 4xx reply).
func (o *Outcome) Temporary() bool { return o.Reply != nil && o.Reply.Temporary() }

// logOutcome reports one outcome per recipient (see reportOutcomes).
func (d *msgDelivery) logOutcome(statuses []error) {
	c := d.c
	c.srv.reportOutcomes(c.ctx, &c.log, d.msg, statuses, time.Since(d.start), &c.outcome)
}

// reportOutcomes reports what became of each recipient of msg: to
// Server.OnOutcome if set, and as the server's own line, at info level
// without a hook and at debug level with one (see Server.OnOutcome).
// statuses[i] belongs to msg.Recipients[i]. o is scratch space for the
// hook's argument (a connection reuses one), so that reporting costs no
// allocation.
func (s *Server) reportOutcomes(ctx context.Context, log *zerolog.Logger, msg *Message, statuses []error, dur time.Duration, o *Outcome) {
	level := zerolog.InfoLevel
	hook := s.OnOutcome
	if hook != nil {
		level = zerolog.DebugLevel
	}
	for i, err := range statuses {
		*o = Outcome{Conn: msg.Conn, MessageID: msg.ID, From: msg.From, To: msg.Recipients[i], Err: err, Duration: dur}
		if err != nil {
			o.Reply = replyFor(err, msg.Conn.ID)
		}
		if ev := log.WithLevel(level); ev.Enabled() {
			logOutcomeLine(ev, o)
		}
		if hook != nil {
			hook(ctx, o)
		}
	}
	*o = Outcome{} // keep nothing of the message alive
}

// logOutcomeLine writes o as the server's outcome line ("delivery").
func logOutcomeLine(ev *zerolog.Event, o *Outcome) {
	ev = ev.Str("msg", o.MessageID).
		Str("from", o.From.String()).
		Str("to", o.To.Address.String()).
		Dur("duration", o.Duration)
	if o.Err == nil {
		ev.Int("code", CodeOK).Str("status", "delivered").Msg("delivery")
		return
	}
	e := o.Reply
	if e.Temporary() {
		ev = ev.Str("status", "deferred")
	} else {
		ev = ev.Str("status", "bounced")
	}
	if cause := errors.Unwrap(e); cause != nil {
		ev = ev.AnErr("cause", cause)
	} else if AsError(o.Err) == nil {
		ev = ev.AnErr("cause", o.Err)
	}
	ev.Int("code", e.Code).Str("enhanced", e.Enhanced().String()).Str("reply", e.Message).Msg("delivery")
}
