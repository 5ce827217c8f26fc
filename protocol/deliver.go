package protocol

import (
	"io"
	"strconv"
	"sync"
	"time"
)

// msgDelivery runs one message through the backend and collects one status
// per accepted recipient. It implements StatusSetter.
//
// Life cycle: run (header, then the backend's Data or Stage) while the
// message streams in; inputEnded when the end of the message has been
// consumed; finishDelivery (on the connection goroutine) writes the replies.
//
// LMTP statuses are written as soon as they are known, in RCPT order, but
// never before the whole message was received intact: until then nothing
// is acknowledged, since a late stream error (bare LF, size) fails every
// recipient.
//
// A connection reuses one delivery value, so a message costs no allocation
// here; StatusSetter.Set must not be called after Data returns.
type msgDelivery struct {
	c     *conn
	tx    *mailTx
	msg   *Message
	start time.Time
	track trackingReader

	mu        sync.Mutex
	streamErr error       // the message is refused as a whole
	st        statusSlots // per recipient
	ready     bool        // input complete and intact: LMTP statuses may go out
	next      int         // next LMTP status to write
	inputDone bool
	running   bool // the backend call is in progress
	finished  bool // finishDelivery began: no watcher may start

	backendErr error // Data's or Stage's return value
	staged     bool  // Stage returned nil

	watchDone chan struct{} // non-nil while a disconnect watcher runs
}

// watchDelay is how long a delivery may run after the end of the message
// before the server starts watching the connection for a disconnect. Fast
// deliveries, the common case, never pay for the watcher.
const watchDelay = 50 * time.Millisecond

func (c *conn) newDelivery() *msgDelivery {
	c.txSeq++
	n := len(c.tx.rcpts)
	d := &c.dlv
	d.mu.Lock()
	d.c, d.tx = c, c.tx
	d.start = time.Now()
	d.track = trackingReader{d: d}
	d.streamErr, d.backendErr = nil, nil
	d.st.reset(n)
	d.ready, d.inputDone, d.running, d.finished, d.staged = false, false, false, false, false
	d.next = 0
	d.watchDone = nil
	c.hdrv = headerState{}
	c.msgv = Message{
		ID:         c.state.ID + "." + strconv.Itoa(c.txSeq),
		Conn:       &c.state,
		From:       c.tx.from,
		Params:     &c.tx.params,
		Recipients: c.tx.rcpts,
		hdr:        &c.hdrv,
	}
	d.msg = &c.msgv
	d.mu.Unlock()
	c.active.Store(d)
	return d
}

// Set implements StatusSetter.
func (d *msgDelivery) Set(i int, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.finished || !d.st.set(i, err) {
		return
	}
	if d.ready && d.c.srv.Protocol == LMTP {
		d.flushLMTPLocked()
	}
}

// setStreamErr records that the message is refused as a whole; the first
// such error wins.
func (d *msgDelivery) setStreamErr(err error) {
	d.mu.Lock()
	if d.streamErr == nil {
		d.streamErr = err
	}
	d.mu.Unlock()
}

// inputEnded is called once the end of the message has been consumed
// (the data reader's or the BDAT reader's end callback). It starts the
// final-reply budget and the timer that starts the disconnect watcher.
func (d *msgDelivery) inputEnded() {
	d.mu.Lock()
	if d.inputDone {
		d.mu.Unlock()
		return
	}
	d.inputDone = true
	// The transfer is over: its total limit no longer applies (the
	// disconnect watcher reads on while the backend delivers).
	d.c.dl.endTransfer()
	if d.streamErr == nil && d.c.srv.Protocol == LMTP {
		d.ready = true
		d.flushLMTPLocked()
	}
	d.mu.Unlock()
	d.c.armTimers()
}

// armTimers starts the final-reply budget and the watcher delay. The
// timers are made once per connection and reset per message.
func (c *conn) armTimers() {
	budget := orDur(c.srv.FinalReplyTimeout, DefaultFinalReplyTimeout)
	c.budgetAt.Store(time.Now().Add(budget).UnixNano())
	if c.budgetTimer == nil {
		c.budgetTimer = time.AfterFunc(budget, c.budgetExpired)
		c.slowTimer = time.AfterFunc(watchDelay, c.deliverySlow)
		return
	}
	c.budgetTimer.Reset(budget)
	c.slowTimer.Reset(watchDelay)
}

func (c *conn) stopTimers() {
	if c.budgetTimer != nil {
		c.budgetTimer.Stop()
		c.slowTimer.Stop()
	}
}

// budgetExpired cancels a delivery that outlived FinalReplyTimeout.
func (c *conn) budgetExpired() {
	if time.Now().UnixNano() < c.budgetAt.Load() {
		return // a stale firing from an earlier message
	}
	if d := c.active.Load(); d != nil {
		d.mu.Lock()
		running := d.running && !d.finished
		d.mu.Unlock()
		if running {
			c.cancelConn(errBudgetExpired)
		}
	}
}

var errBudgetExpired = NewError(CodeLocalError, ECTempTimeExpired, "Delivery took too long, try again later")

// deliverySlow starts the disconnect watcher for a delivery still running
// watchDelay after the end of its message.
func (c *conn) deliverySlow() {
	d := c.active.Load()
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running && d.inputDone && !d.finished && d.watchDone == nil {
		d.startWatcherLocked()
	}
}

// startWatcherLocked peeks at the connection while the backend delivers:
// input arriving is left in the buffer (Postfix pipelines QUIT after the
// final dot), but an EOF or reset means the client is gone and the
// connection's context, which the backend holds, is cancelled. The
// connection goroutine is inside the backend call then and does not touch
// the reader. d.mu is held.
func (d *msgDelivery) startWatcherLocked() {
	c := d.c
	done := make(chan struct{})
	d.watchDone = done
	go func() {
		defer close(done)
		for {
			_, err := c.br.Peek(1)
			switch {
			case err == nil:
				return
			case c.interrupt.Load():
				return
			case isTimeout(err):
				continue // a quiet client is still there
			default:
				c.log.Info().Err(err).Msg("client went away during delivery")
				c.cancelConn(ErrConnectionLost)
				return
			}
		}
	}()
}

// stopWatcher ends the disconnect watcher and the timers; no watcher can
// start afterwards.
func (d *msgDelivery) stopWatcher() {
	c := d.c
	c.stopTimers()
	d.mu.Lock()
	d.finished = true
	done := d.watchDone
	d.watchDone = nil
	d.mu.Unlock()
	if done == nil {
		return
	}
	c.interruptRead()
	<-done
	c.interrupt.Store(false)
}

// run parses the header from r and hands the message to the backend. It
// returns when the backend's call returns.
func (d *msgDelivery) run(r io.Reader) {
	c := d.c
	hr := getHeaderReader(r)
	defer putHeaderReader(hr)

	var received []byte
	if !c.srv.DisableReceived {
		received = c.receivedField(d.msg)
	}
	raw, hops, body, err := readHeader(hr, orInt(c.srv.MaxHeaderBytes, DefaultMaxHeaderBytes), &c.hdr, received)
	if err != nil {
		d.setStreamErr(err)
		return
	}
	if hops > orInt(c.srv.MaxReceivedHeaders, DefaultMaxReceivedHeaders) {
		d.setStreamErr(ErrTooManyHops)
		return
	}
	d.msg.hdr.raw = raw
	d.msg.hdr.top = len(received)
	d.msg.hdr.own = c.srv.ownMarker
	d.msg.Body = body

	d.mu.Lock()
	d.running = true
	d.mu.Unlock()
	ctx := c.ctx
	st, staging := d.tx.t.(Stager)
	if staging && c.srv.Protocol == SMTP {
		d.backendErr = st.Stage(ctx, d.msg)
		d.staged = d.backendErr == nil
	} else {
		d.backendErr = d.tx.t.Data(ctx, d.msg, d)
	}
	d.mu.Lock()
	d.running = false
	d.mu.Unlock()
	d.msg.Body = nil
}

// finish writes the replies once the input has been consumed. intact is
// false when the connection broke or the message's end was not found
// within the drain limit: then the session ends. It returns whether the
// session goes on.
func (c *conn) finishDelivery(d *msgDelivery, intact bool) bool {
	d.stopWatcher()
	defer func() {
		c.active.Store(nil)
		c.endTransaction()
		c.renewContext()
	}()
	if !intact {
		d.mu.Lock()
		err := d.streamErr
		d.mu.Unlock()
		c.log.Info().Str("msg", d.msg.ID).Err(err).Msg("message not received completely, closing connection")
		c.wmu.Lock()
		if e := AsError(err); e != nil && e.Code/100 == 5 {
			// The message was refused for good while it streamed (too
			// big, a broken text rule) and then ran past the drain
			// bound. The client gets that permanent answer, per
			// recipient in LMTP, before the 421 that announces the
			// close (RFC 5321 section 3.8): a 421 alone is transient,
			// and the client would send the same message again and
			// again until its queue lifetime ends.
			c.replyMessageRefused(d, e)
		}
		c.reply(CodeServiceUnavailable, ECTempBadConnection, c.srv.hostname()+" Error reading message, closing connection")
		c.bw.Flush()
		c.wmu.Unlock()
		return false
	}

	d.mu.Lock()
	streamErr := d.streamErr
	if streamErr != nil {
		// Nothing was acknowledged yet (ready was never set).
		d.st.setAll(streamErr)
	} else {
		d.st.fill(d.backendErr)
	}
	d.mu.Unlock()

	if c.srv.Protocol == LMTP {
		d.mu.Lock()
		d.ready = true
		d.flushLMTPLocked()
		d.mu.Unlock()
		d.logOutcome(d.st.errs)
		return true
	}

	var final error
	switch {
	case streamErr != nil:
		final = streamErr
	case d.staged:
		final = d.tx.t.(Stager).Commit(c.ctx)
		if final != nil && AsError(final) == nil {
			final = WrapError(CodeLocalError, ECTempSystem, "Delivery failed, try again later (session "+c.state.ID+")", final)
		}
	case d.backendErr != nil && hasStager(d.tx.t):
		final = d.backendErr
	default:
		final = FoldStatuses(d.st.errs)
	}
	if final == nil {
		c.reply(CodeOK, ECOK, "Message accepted for delivery as "+d.msg.ID)
	} else {
		c.replyErr(final)
	}
	out := d.st.errs
	if final != nil && streamErr == nil && d.staged {
		for i := range out {
			out[i] = final
		}
	}
	d.logOutcome(out)
	return true
}

// replyMessageRefused answers a whole message with e: one reply in SMTP,
// one per accepted recipient in LMTP (RFC 2033 section 4.2). c.wmu is
// held.
func (c *conn) replyMessageRefused(d *msgDelivery, e *Error) {
	e = c.errorFor(e)
	if c.srv.Protocol != LMTP {
		c.reply(e.Code, e.Enhanced(), e.Message)
		return
	}
	for i := range d.msg.Recipients {
		c.replyRcpt(e.Code, e.Enhanced(), &d.msg.Recipients[i].Address, e.Message, "")
	}
}

// failDelivery ends a transaction whose message was refused as a whole
// before its end (at a BDAT chunk that is not the LAST one) with one
// reply, in LMTP too: RFC 2033 gives one reply per recipient only at the
// end of the message, and a failed BDAT command gets one reply (RFC 3030
// section 2). The backend has returned.
func (c *conn) failDelivery(d *msgDelivery, err error) bool {
	c.endDelivery(d, err)
	c.replyErr(err)
	return true
}

// closeDelivery ends a refused transaction and the session: reply, or a
// generic 421 when reply is nil, then the connection closes.
func (c *conn) closeDelivery(d *msgDelivery, err error, reply *Error) bool {
	c.endDelivery(d, err)
	if reply == nil {
		reply = NewError(CodeServiceUnavailable, ECTempBadConnection, c.srv.hostname()+" Error reading message, closing connection")
	}
	c.wmu.Lock()
	c.replyErr(reply)
	c.bw.Flush()
	c.wmu.Unlock()
	return false
}

// endDelivery records err for every recipient, logs the outcome and ends
// the transaction, for a delivery whose backend has returned.
func (c *conn) endDelivery(d *msgDelivery, err error) {
	d.stopWatcher()
	d.st.setAll(err)
	d.logOutcome(d.st.errs)
	c.active.Store(nil)
	c.endTransaction()
	c.renewContext()
}

func hasStager(t Transaction) bool { _, ok := t.(Stager); return ok }

// flushLMTPLocked writes the statuses that are known, in RCPT order, and
// flushes them to the client (RFC 2033 4.2). d.mu is held.
func (d *msgDelivery) flushLMTPLocked() {
	c := d.c
	if d.next >= len(d.st.done) || !d.st.done[d.next] {
		return
	}
	c.wmu.Lock()
	for d.next < len(d.st.done) && d.st.done[d.next] {
		err := d.st.errs[d.next]
		rcpt := &d.msg.Recipients[d.next].Address
		if err == nil {
			c.replyRcpt(CodeOK, ECOK, rcpt, "Delivered as ", d.msg.ID)
		} else {
			e := c.errorFor(err)
			c.replyRcpt(e.Code, e.Enhanced(), rcpt, e.Message, "")
		}
		d.next++
	}
	if err := c.bw.Flush(); err != nil {
		c.log.Debug().Err(err).Msg("writing LMTP status")
	}
	c.wmu.Unlock()
}
