package protocol

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
)

// BDAT (RFC 3030) streams a message in chunks, each announced by a BDAT
// command on the command channel. The backend reads one continuous stream,
// so its delivery runs in a goroutine of its own while the connection's
// goroutine reads BDAT commands and hands each chunk over.
//
// The stream the backend reads is the same checking reader DATA uses
// (dataReader, in Chunked mode): the size limit, the text line length and
// the bare line ending policy apply to BDAT text exactly as to DATA text;
// BODY=BINARYMIME lifts the two line rules (Binary). Under it, chunkSource
// yields the chunks' bytes, read straight from the connection's buffer,
// and blocks at a chunk's end until the next BDAT command hands over the
// next chunk. Whatever the consumer leaves of a chunk (it stopped early),
// the connection discards, so chunk data is never read as commands.
//
// Size: a chunk whose announced size takes the message past the limit is
// never given to the backend. The backend is stopped (its read fails with
// ErrMessageTooBig and its context is cancelled) and the chunk is read and
// dropped if the message's announced total stays within the drain bound
// (the limit plus half, as DATA's), then answered 552 5.3.4; past that
// bound the connection is closed with 421, since reading the chunk to
// stay in sync would cost more than the client is allowed to send.

type bdatChunk struct {
	size int64
	last bool
}

// bdatState links the connection goroutine (producer) to the delivery
// goroutine (consumer).
type bdatState struct {
	c        *conn
	d        *msgDelivery
	chunks   chan bdatChunk // next chunk for the consumer
	consumed chan struct{}  // the consumer finished the current chunk
	done     chan struct{}  // the delivery goroutine returned
	abort    chan struct{}  // the transaction was abandoned
	once     sync.Once
	waiting  bool  // producer side: the consumer has asked for a chunk
	total    int64 // producer side: announced bytes of all chunks so far

	src chunkSource
	br  *bufio.Reader // over src, for dr
	dr  dataReader    // the checking reader the backend reads
}

// chunkSource is the raw concatenation of the chunks, as an io.Reader for
// the consumer's bufio.Reader. Its fields are owned by the consumer while
// the delivery goroutine runs; the producer reads them only after consumed
// or done.
//
// Hand-off protocol: the consumer sends on consumed whenever it needs the
// next chunk (at its first read, and each time a chunk is used up); the
// producer then sends that chunk on chunks. The producer remembers when
// the consumer is already waiting (waiting), so each signal is used once.
type chunkSource struct {
	b         *bdatState
	remaining int64 // unread bytes of the current chunk
	curLast   bool  // the current chunk is the LAST one
	ended     bool  // LAST chunk read to its end
	broken    bool  // a network read failed
}

func (s *chunkSource) Read(p []byte) (int, error) {
	b := s.b
	for s.remaining == 0 {
		if s.ended {
			return 0, io.EOF
		}
		select {
		case b.consumed <- struct{}{}:
		case <-b.abort:
			return 0, errBdatAborted
		}
		select {
		case ch := <-b.chunks:
			s.remaining, s.curLast = ch.size, ch.last
			if ch.last && ch.size == 0 {
				s.ended = true
			}
		case <-b.abort:
			return 0, errBdatAborted
		}
	}
	if int64(len(p)) > s.remaining {
		p = p[:s.remaining]
	}
	n, err := b.c.br.Read(p)
	s.remaining -= int64(n)
	if err != nil {
		// The checking reader turns it into ErrDataTimeout or
		// ErrConnectionLost; the session ends.
		s.broken = true
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return n, err
	}
	if s.remaining == 0 && s.curLast {
		s.ended = true
	}
	return n, nil
}

var errBdatAborted = errors.New("protocol: BDAT transaction abandoned")

// bdatBufPool holds the consumer-side buffers of BDAT transactions.
var bdatBufPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferSize) }}

// abandon stops the consumer (RSET, QUIT, connection end) and waits for
// the delivery goroutine to return, so the Transaction is never used by
// two goroutines.
func (b *bdatState) abandon() { b.abandonWith(errBdatAborted) }

// abandonWith is abandon with the cause the backend's context is
// cancelled with; the session gets a fresh context afterwards. The
// consumer's buffer goes back to the pool.
func (b *bdatState) abandonWith(cause error) {
	defer b.c.renewContext()
	b.once.Do(func() {
		b.c.cancelConn(cause)
		close(b.abort)
	})
	<-b.done
	b.release()
}

// streamErr returns the error the message was refused with as a whole, if
// the consumer already returned with one.
func (b *bdatState) streamErr() error {
	select {
	case <-b.done:
	default:
		return nil
	}
	b.d.mu.Lock()
	defer b.d.mu.Unlock()
	return b.d.streamErr
}

func parseBdatArgs(arg string) (size int64, last bool, ok bool) {
	f := strings.Fields(arg)
	if len(f) == 0 || len(f) > 2 {
		return 0, false, false
	}
	if len(f) == 2 {
		if !strings.EqualFold(f[1], "LAST") {
			return 0, false, false
		}
		last = true
	}
	if len(f[0]) > 18 {
		return 0, false, false
	}
	for i := 0; i < len(f[0]); i++ {
		if f[0][i] < '0' || f[0][i] > '9' {
			return 0, false, false
		}
	}
	size, err := strconv.ParseInt(f[0], 10, 64)
	return size, last, err == nil
}

func (c *conn) cmdBdat(arg string) bool {
	size, last, ok := parseBdatArgs(arg)
	if !ok {
		// Without a valid size the chunk's end is unknown: its bytes would be
		// read as commands, so the session cannot go on. The command gets
		// its 501, and the close its 421: RFC 5321 section 3.8 lets a
		// server close only after 221 or 421 (a 421 may come unasked).
		c.reply(CodeParamSyntax, ECPermInvalidArgs, "Syntax: BDAT size [LAST]")
		c.reply(CodeServiceUnavailable, ECTempProtocol, c.srv.hostname()+" BDAT chunk size unknown, closing connection")
		c.bw.Flush()
		return false
	}
	c.startDataPhase()
	defer c.endDataPhase()

	var refuse string
	switch {
	case !c.state.ESMTP:
		// CHUNKING is an extension: after HELO it was not offered.
		refuse = "BDAT requires EHLO"
	case c.tx == nil:
		refuse = "Need MAIL command"
	case len(c.tx.rcpts) == 0 && last && c.srv.Protocol == LMTP:
		// RFC 2033 section 4.3: BDAT LAST returns one reply per accepted
		// recipient, so zero replies when there is none. The chunk is
		// consumed and the transaction ends, silently.
		if !c.discardChunk(0, size) {
			return false
		}
		c.log.Info().Int64("size", size).Msg("BDAT LAST without accepted recipients: no reply (RFC 2033 4.3)")
		c.endTransaction()
		return true
	case len(c.tx.rcpts) == 0:
		refuse = "No valid recipients"
	}
	if refuse != "" {
		// RFC 3030 section 2: the chunk is consumed even when refused.
		if !c.discardChunk(0, size) {
			return false
		}
		c.reply(CodeBadSequence, ECPermInvalidCommand, refuse)
		return c.countError()
	}

	b := c.tx.bdat
	if b == nil {
		b = c.startBdat()
	}
	if max := c.srv.maxMessageBytes(); max > 0 && size > max-b.total {
		return c.bdatTooBig(b, size, last)
	}
	b.total += size
	if !c.feedChunk(b, size, last) {
		return c.bdatBroken(b)
	}
	if !last {
		if err := b.streamErr(); err != nil {
			// The text broke a rule (bare line ending, long line, header):
			// this chunk fails, and with it the transaction (RFC 3030
			// section 2; later chunks get 503 and are discarded).
			c.tx.bdat = nil
			b.release()
			return c.failDelivery(b.d, err)
		}
		c.reply(CodeOK, ECOK, strconv.FormatInt(size, 10)+" octets received")
		return true
	}
	// LAST: the whole message is in; wait for the backend and answer.
	<-b.done
	d := b.d
	d.inputEnded()
	c.tx.bdat = nil // the delivery goroutine is done; nothing to abandon
	b.release()
	return c.finishDelivery(d, true)
}

// bdatTooBig refuses the message whose next chunk, of size bytes, would
// take it past the size limit. The backend is stopped first, so nothing of
// the message is kept; the chunk is then dropped unread by the backend, or
// the connection closed if reading it would pass the drain bound.
func (c *conn) bdatTooBig(b *bdatState, size int64, last bool) bool {
	d := b.d
	d.setStreamErr(ErrMessageTooBig)
	b.abandonWith(ErrMessageTooBig)
	c.tx.bdat = nil
	max := c.srv.maxMessageBytes()
	if lim := c.drainLimit(); size > lim-b.total {
		c.log.Info().Str("msg", d.msg.ID).Int64("chunk", size).Int64("received", b.total).
			Msg("BDAT chunk far over the size limit, closing connection")
		// The permanent answer first (per recipient for an LMTP BDAT
		// LAST), so that the client bounces the message instead of
		// retrying it, then the 421 that announces the close (RFC 5321
		// section 3.8).
		tooBig := NewError(ErrMessageTooBig.Code, ErrMessageTooBig.EnhancedCode,
			"Message size exceeds fixed maximum message size of "+strconv.FormatInt(max, 10)+" octets")
		c.wmu.Lock()
		if last {
			c.replyMessageRefused(d, tooBig)
		} else {
			c.replyErr(tooBig)
		}
		c.wmu.Unlock()
		return c.closeDelivery(d, ErrMessageTooBig, NewError(CodeServiceUnavailable, ECTempMessageTooBig,
			c.srv.hostname()+" Message size exceeds fixed maximum message size of "+strconv.FormatInt(max, 10)+" octets; closing connection"))
	}
	if !c.discard(size) {
		return c.closeDelivery(d, ErrMessageTooBig, nil)
	}
	if last {
		// LMTP: one 552 per accepted recipient, as for DATA.
		return c.finishDelivery(d, true)
	}
	return c.failDelivery(d, ErrMessageTooBig)
}

// feedChunk hands one chunk to the consumer, or discards it when the
// consumer is gone, and makes sure the chunk is consumed entirely. It
// returns false when the connection failed.
func (c *conn) feedChunk(b *bdatState, size int64, last bool) bool {
	if !b.waiting {
		select {
		case <-b.consumed:
			b.waiting = true
		case <-b.done:
		}
	}
	if !b.waiting {
		// The backend already returned: consume the chunk ourselves.
		return c.discard(size)
	}
	b.waiting = false
	b.chunks <- bdatChunk{size: size, last: last}
	select {
	case <-b.consumed:
		b.waiting = true // used up; the consumer wants the next chunk
		return true
	case <-b.done:
	}
	// The consumer returned inside or right after the chunk.
	if b.src.broken {
		return false
	}
	left := b.src.remaining
	b.src.remaining = 0
	return c.discard(left)
}

func (c *conn) startBdat() *bdatState {
	d := c.newDelivery()
	b := &bdatState{
		c:        c,
		d:        d,
		chunks:   make(chan bdatChunk),
		consumed: make(chan struct{}),
		done:     make(chan struct{}),
		abort:    make(chan struct{}),
	}
	b.src.b = b
	b.br = bdatBufPool.Get().(*bufio.Reader)
	b.br.Reset(&b.src)
	b.dr.reset(b.br, dataOptions{
		MaxBytes:      c.srv.maxMessageBytes(),
		MaxLineLength: c.srv.maxTextLineLength(),
		Normalize:     c.srv.BareLineEndings == NormalizeBareLineEndings,
		Chunked:       true,
		Binary:        c.tx.params.Body == BodyBinaryMIME,
	})
	b.dr.onEnd = c.onDataEnd
	c.tx.bdat = b
	go func() {
		defer close(b.done)
		defer func() {
			if v := recover(); v != nil {
				d.setStreamErr(fmt.Errorf("protocol: backend panicked: %v", v))
				c.log.Error().Interface("panic", v).Msg("backend panicked during BDAT")
			}
		}()
		d.track.r = &b.dr
		d.run(&d.track)
	}()
	return b
}

// release returns the consumer's buffer once the delivery goroutine is
// done.
func (b *bdatState) release() {
	if b.br != nil {
		b.br.Reset(nil)
		bdatBufPool.Put(b.br)
		b.br = nil
	}
}

// bdatBroken ends a session whose connection failed inside a chunk.
func (c *conn) bdatBroken(b *bdatState) bool {
	b.abandonWith(ErrConnectionLost)
	c.tx.bdat = nil
	return c.finishDelivery(b.d, false)
}

// discardChunk reads and drops a chunk of size bytes that comes after
// received bytes of the same message, or, when that would pass the drain
// bound, answers 421 and returns false without reading it: the session
// cannot stay in sync at an acceptable cost.
func (c *conn) discardChunk(received, size int64) bool {
	if lim := c.drainLimit(); lim > 0 && size > lim-received {
		c.log.Info().Int64("chunk", size).Msg("refused BDAT chunk over the drain bound, closing connection")
		c.reply(CodeServiceUnavailable, ECTempMessageTooBig, c.srv.hostname()+" BDAT chunk too big to skip; closing connection")
		c.bw.Flush()
		return false
	}
	return c.discard(size)
}

// discard reads and drops n bytes of chunk data.
func (c *conn) discard(n int64) bool {
	for n > 0 {
		step := min(n, int64(readBufferSize))
		m, err := c.br.Discard(int(step))
		n -= int64(m)
		if err != nil {
			c.log.Debug().Err(err).Msg("discarding BDAT chunk")
			return false
		}
	}
	return true
}
