package policy

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/internal/reqserver"
)

// conn is the policy side of one client connection: the lifecycle, the
// reader and the logger are rc's.
type conn struct {
	s   *Server
	rc  *reqserver.Conn
	lim Limits
	req *Request // read and not yet answered
}

// ReadRequest reads the next request; see reqserver.Session.
func (c *conn) ReadRequest() error {
	req, err := ReadRequest(c.rc.Reader(), c.lim)
	c.req = req
	return err
}

// Answer asks the Handler and sends its action; see reqserver.Session.
func (c *conn) Answer(n int) error {
	return c.write(c.decide(c.req, n))
}

// Abort answers the request a panicking Handler left, as for any failure.
func (c *conn) Abort() {
	c.write(c.s.errorAction())
}

// ReadFailed logs why a request could not be read.
func (c *conn) ReadFailed(err error) {
	if errors.Is(err, ErrMalformed) {
		// SMTPD_POLICY_README: "In case of trouble the policy server must
		// not send a reply. Instead the server must log a warning and
		// disconnect."
		c.rc.Log().Warn().Err(err).Msg("malformed policy request; closing the connection without a reply")
		return
	}
	c.rc.Log().Warn().Err(err).Msg("reading a policy request failed; closing the connection")
}

// decide asks the Handler and checks its answer.
func (c *conn) decide(req *Request, n int) Action {
	c.rc.Log().Trace().Int("request", n).Interface("attrs", req.Attrs).Msg("policy request")
	ctx, cancel := context.WithTimeout(c.s.srv.Context(), reqserver.Or(c.s.HandlerTimeout, DefaultHandlerTimeout))
	defer cancel()
	t0 := time.Now()
	action, err := c.s.Handler.Policy(ctx, req)
	if err == nil {
		err = action.Validate()
	}
	if err == nil && ctx.Err() != nil {
		// The answer came after the deadline: it may rest on a lookup
		// that was cut short. Treat it as a failure, as documented.
		err = context.Cause(ctx)
	}
	var ev *zerolog.Event
	if err != nil {
		action = c.s.errorAction()
		ev = c.rc.Log().Error().Err(err)
	} else if isDunno(action) {
		ev = c.rc.Log().Debug()
	} else {
		ev = c.rc.Log().Info()
	}
	ev.Int("request", n).
		Str("state", req.ProtocolState).
		Str("client", req.ClientAddress).
		Str("sender", req.Sender).
		Str("recipient", req.Recipient).
		Uint64("size", req.Size).
		Str("queue_id", req.QueueID).
		Str("instance", req.Instance).
		Str("action", string(action)).
		Dur("duration", time.Since(t0))
	if err != nil {
		ev.Msg("policy handler failed; answered with the error action")
	} else {
		ev.Msg("policy answer")
	}
	return action
}

func isDunno(a Action) bool {
	verb, _, _ := strings.Cut(string(a), " ")
	return strings.EqualFold(verb, string(Dunno))
}

// write sends "action=..." and the empty line in one write.
func (c *conn) write(a Action) error {
	err := c.rc.Write([]byte("action=" + string(a) + "\n\n"))
	c.rc.Log().Trace().Str("reply", string(a)).Err(err).Msg("policy reply")
	return err
}
