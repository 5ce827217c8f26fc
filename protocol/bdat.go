package protocol

import (
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
// goroutine reads BDAT commands and hands each chunk over. The chunk bytes
// are read by the consumer straight from the connection's buffer: no copy,
// no pipe. Whatever the consumer leaves of a chunk (it stopped early), the
// connection discards, so chunk data is never read as commands.

type bdatChunk struct {
	size int64
	last bool
}

// bdatState links the connection goroutine (producer) to the delivery
// goroutine (consumer).
type bdatState struct {
	c        *conn
	d        *delivery
	chunks   chan bdatChunk // next chunk for the consumer
	consumed chan struct{}  // the consumer finished the current chunk
	done     chan struct{}  // the delivery goroutine returned
	abort    chan struct{}  // the transaction was abandoned
	once     sync.Once
	waiting  bool // producer side: the consumer has asked for a chunk

	// Owned by the consumer while it runs; read by the producer only after
	// consumed or done.
	remaining int64 // unread bytes of the current chunk
	curLast   bool  // the current chunk is the LAST one
	total     int64 // bytes of all chunks so far
	ended     bool  // LAST chunk consumed
	broken    bool  // a network read failed
}

// bdatReader is the message stream the backend reads.
//
// Hand-off protocol: the consumer sends on consumed whenever it needs the
// next chunk (at its first read, and each time a chunk is used up); the
// producer then sends that chunk on chunks. The producer remembers when
// the consumer is already waiting (waiting), so each signal is used once.
type bdatReader struct{ b *bdatState }

func (r bdatReader) Read(p []byte) (int, error) {
	b := r.b
	for b.remaining == 0 {
		if b.ended {
			return 0, io.EOF
		}
		select {
		case b.consumed <- struct{}{}:
		case <-b.abort:
			return 0, errBdatAborted
		}
		select {
		case ch := <-b.chunks:
			b.remaining, b.curLast = ch.size, ch.last
			if ch.last && ch.size == 0 {
				b.finishLast()
			}
		case <-b.abort:
			return 0, errBdatAborted
		}
	}
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.c.br.Read(p)
	b.remaining -= int64(n)
	b.total += int64(n)
	if err != nil {
		b.broken = true
		return n, streamReadError(err)
	}
	if max := b.c.srv.maxMessageBytes(); max > 0 && b.total > max {
		return n, ErrMessageTooBig
	}
	if b.remaining == 0 && b.curLast {
		b.finishLast()
	}
	return n, nil
}

var errBdatAborted = errors.New("protocol: BDAT transaction abandoned")

func (b *bdatState) finishLast() {
	b.ended = true
	b.d.inputEnded()
}

// streamReadError maps a network read error in message text to the
// session errors (the connection is unusable afterwards).
func streamReadError(err error) error {
	if isTimeout(err) {
		return fmt.Errorf("%w: %w", ErrDataTimeout, err)
	}
	return fmt.Errorf("%w: %w", ErrConnectionLost, err)
}

// abandon stops the consumer (RSET, QUIT, connection end) and waits for
// the delivery goroutine to return, so the Transaction is never used by
// two goroutines.
func (b *bdatState) abandon() {
	defer b.c.renewContext()
	b.once.Do(func() {
		b.c.cancelConn(errBdatAborted)
		close(b.abort)
	})
	<-b.done
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
		// read as commands. Close the connection instead (RFC 3030 allows the
		// server to close after a syntax error in BDAT).
		c.reply(CodeParamSyntax, ecBadArgs, "Syntax: BDAT size [LAST]; closing connection")
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
	case len(c.tx.rcpts) == 0:
		refuse = "No valid recipients"
	}
	if refuse != "" {
		// RFC 3030 section 2: the chunk is consumed even when refused.
		if !c.discard(size) {
			return false
		}
		c.reply(CodeBadSequence, ecBadCommand, refuse)
		return c.countError()
	}

	b := c.tx.bdat
	if b == nil {
		b = c.startBdat()
	}
	if !c.feedChunk(b, size, last) {
		return c.bdatBroken(b)
	}
	if !last {
		c.reply(CodeOK, ecOK, strconv.FormatInt(size, 10)+" octets received")
		return true
	}
	// LAST: the whole message is in; wait for the backend and answer.
	<-b.done
	d := b.d
	d.inputEnded()
	c.tx.bdat = nil // the delivery goroutine is done; nothing to abandon
	return c.finishDelivery(d, true)
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
		b.total += size
		return c.discardBounded(b, size)
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
	if b.broken {
		return false
	}
	left := b.remaining
	b.remaining = 0
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
	c.tx.bdat = b
	go func() {
		defer close(b.done)
		defer func() {
			if v := recover(); v != nil {
				d.setStreamErr(fmt.Errorf("protocol: backend panicked: %v", v))
				c.log.Error().Interface("panic", v).Msg("backend panicked during BDAT")
			}
		}()
		d.track.r = bdatReader{b}
		d.run(&d.track)
	}()
	return b
}

// bdatBroken ends a session whose connection failed inside a chunk.
func (c *conn) bdatBroken(b *bdatState) bool {
	b.abandon()
	c.tx.bdat = nil
	return c.finishDelivery(b.d, false)
}

// discardBounded discards a chunk after the backend returned, bounded by
// the drain limit over the whole message.
func (c *conn) discardBounded(b *bdatState, size int64) bool {
	if lim := c.drainLimit(); lim > 0 && b.total > c.srv.maxMessageBytes()+lim {
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
