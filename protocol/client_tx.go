package protocol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RcptStatus is the outcome for one recipient of a transaction.
type RcptStatus struct {
	// Reply is the reply that decided the outcome: the RCPT reply when it
	// refused the recipient, otherwise the reply after the message (in
	// LMTP the recipient's own, in SMTP the message's). It is nil when no
	// such reply arrived.
	Reply *Reply
	// Err is nil when the server accepted the message for the recipient.
	// Otherwise it is the server's negative reply as an *Error (what a
	// proxy relays), or, when the outcome is unknown or the message was
	// not sent (connection lost, timeout, MAIL refused, a body read
	// error), that error.
	Err error
}

// mailLine builds "MAIL FROM:<...> params". utf8 says the envelope has a
// non-ASCII address.
func (c *Client) mailLine(from Address, p *MailParams, utf8 bool) (string, bool, error) {
	if p == nil {
		p = &MailParams{}
	}
	if err := checkPath(from); err != nil {
		return "", false, err
	}
	var b strings.Builder
	b.WriteString("MAIL FROM:<")
	b.WriteString(from.String())
	b.WriteByte('>')
	_, has8bit := c.ext["8BITMIME"]
	_, hasUTF8 := c.ext["SMTPUTF8"]
	_, hasDSN := c.ext["DSN"]
	_, hasSize := c.ext["SIZE"]
	_, hasAuth := c.ext["AUTH"]
	if p.Size > 0 && hasSize {
		b.WriteString(" SIZE=")
		b.WriteString(strconv.FormatInt(p.Size, 10))
	}
	switch {
	case p.Body == "":
	case strings.EqualFold(string(p.Body), string(Body7Bit)):
		if has8bit {
			b.WriteString(" BODY=7BIT")
		}
	case strings.EqualFold(string(p.Body), string(Body8BitMIME)):
		if !has8bit {
			return "", false, fmt.Errorf("%w: 8BITMIME", ErrNotOffered)
		}
		b.WriteString(" BODY=8BITMIME")
	case strings.EqualFold(string(p.Body), string(BodyBinaryMIME)):
		_, bin := c.ext["BINARYMIME"]
		_, chunking := c.ext["CHUNKING"]
		if !bin || !chunking {
			return "", false, fmt.Errorf("%w: BINARYMIME", ErrNotOffered)
		}
		b.WriteString(" BODY=BINARYMIME")
	default:
		return "", false, fmt.Errorf("protocol: client: bad BODY value %q", p.Body)
	}
	smtputf8 := p.SMTPUTF8 || utf8 || !from.IsASCII()
	if smtputf8 {
		if !hasUTF8 {
			return "", false, fmt.Errorf("%w: SMTPUTF8", ErrNotOffered)
		}
		b.WriteString(" SMTPUTF8")
	}
	if hasDSN {
		switch p.Return {
		case "":
		case DSNReturnFull, DSNReturnHeaders:
			b.WriteString(" RET=")
			b.WriteString(string(p.Return))
		default:
			return "", false, fmt.Errorf("protocol: client: bad RET value %q", p.Return)
		}
		if p.EnvelopeID != "" {
			b.WriteString(" ENVID=")
			b.WriteString(encodeXtext(p.EnvelopeID))
		}
	}
	if hasAuth && p.Auth != "" {
		b.WriteString(" AUTH=")
		if p.Auth == "<>" {
			b.WriteString("<>")
		} else {
			b.WriteString(encodeXtext(p.Auth))
		}
	}
	return b.String(), smtputf8, nil
}

// rcptLine builds "RCPT TO:<...> params".
func (c *Client) rcptLine(to Address, p *RcptParams, smtputf8 bool) (string, error) {
	if to.IsNull() {
		return "", errors.New("protocol: client: null recipient address")
	}
	if err := checkPath(to); err != nil {
		return "", err
	}
	if !to.IsASCII() && !smtputf8 {
		return "", fmt.Errorf("protocol: client: non-ASCII recipient %q in a transaction without SMTPUTF8", to.String())
	}
	var b strings.Builder
	b.WriteString("RCPT TO:<")
	b.WriteString(to.String())
	b.WriteByte('>')
	if _, hasDSN := c.ext["DSN"]; hasDSN && p != nil {
		if len(p.Notify) > 0 {
			b.WriteString(" NOTIFY=")
			for i, n := range p.Notify {
				switch n {
				case DSNNotifyNever, DSNNotifySuccess, DSNNotifyFailure, DSNNotifyDelay:
				default:
					return "", fmt.Errorf("protocol: client: bad NOTIFY value %q", n)
				}
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(string(n))
			}
		}
		if p.OriginalRecipient != "" {
			typ := p.OriginalRecipientType
			if typ == "" {
				typ = "rfc822"
			}
			if !isAtom(typ) {
				return "", fmt.Errorf("protocol: client: bad ORCPT type %q", typ)
			}
			b.WriteString(" ORCPT=")
			b.WriteString(typ)
			b.WriteByte(';')
			b.WriteString(encodeXtext(p.OriginalRecipient))
		}
	}
	return b.String(), nil
}

// checkPath refuses an address that would break the command line.
func checkPath(a Address) error {
	s := a.String()
	if strings.ContainsAny(s, "\r\n\x00<>") || strings.ContainsAny(a.Domain, " ") ||
		!a.IsQuoted() && strings.ContainsAny(a.LocalPart, " ") {
		return fmt.Errorf("protocol: client: bad address %q", s)
	}
	return nil
}

// Mail starts a transaction (MAIL FROM, RFC 5321 section 3.3) with the
// parameters p (nil for none), sent as described above. A refusal is an
// *Error.
func (c *Client) Mail(ctx context.Context, from Address, p *MailParams) error {
	line, utf8, err := c.mailLine(from, p, false)
	if err != nil {
		return err
	}
	r, err := c.cmd(ctx, c.opts.dur(c.opts.CommandTimeout, DefaultClientCommandTimeout), line)
	if err != nil {
		return err
	}
	if r.Code != CodeOK {
		return r.errOr(fmt.Errorf("protocol: client: unexpected reply to MAIL: %s", r))
	}
	c.inTx, c.accepted, c.utf8 = true, 0, utf8
	c.body = BodyType("")
	if p != nil {
		c.body = BodyType(strings.ToUpper(string(p.Body)))
	}
	return nil
}

// Rcpt adds a recipient (RCPT TO) with the parameters p (nil for none).
// A refusal is an *Error; the transaction goes on without the recipient.
func (c *Client) Rcpt(ctx context.Context, to Address, p *RcptParams) error {
	if !c.inTx {
		return errors.New("protocol: client: RCPT outside a transaction")
	}
	line, err := c.rcptLine(to, p, c.utf8)
	if err != nil {
		return err
	}
	r, err := c.cmd(ctx, c.opts.dur(c.opts.CommandTimeout, DefaultClientCommandTimeout), line)
	if err != nil {
		return err
	}
	if r.Code != CodeOK && r.Code != CodeCannotVerify {
		return r.errOr(fmt.Errorf("protocol: client: unexpected reply to RCPT: %s", r))
	}
	c.accepted++
	return nil
}

// Data sends the message read from body, and returns the outcome for
// every recipient Rcpt accepted, in RCPT order: in LMTP each recipient's
// own reply (RFC 2033 section 4.2), in SMTP the one reply for all.
//
// body is read to its end, in blocks, and never held whole in memory. A
// bare LF (or CR) in it becomes CRLF, a missing final line ending is
// added, and with DATA lines starting with "." are dot-stuffed (RFC 5321
// section 4.5.2). BDAT is used when ClientOptions.Chunking is set and
// the server offers CHUNKING, and always for BODY=BINARYMIME, whose
// octets are then sent unchanged.
//
// err is non-nil when the message was not delivered as a whole: the
// server refused DATA or a chunk (an *Error, also in every status), body
// failed (the DATA connection is then closed, as the only way to abort
// it; after a BDAT chunk the transaction is reset), or the connection
// failed (recipients without a reply get the error). The transaction is
// over when Data returns.
func (c *Client) Data(ctx context.Context, body io.Reader) ([]RcptStatus, error) {
	if !c.inTx {
		return nil, errors.New("protocol: client: DATA outside a transaction")
	}
	if c.accepted == 0 {
		return nil, errors.New("protocol: client: DATA without an accepted recipient")
	}
	st := make([]RcptStatus, c.accepted)
	if c.useBDAT() {
		return st, c.sendBDAT(ctx, body, st)
	}
	r, err := c.exchange(ctx, c.opts.dur(c.opts.DataInitTimeout, DefaultClientDataInitTimeout), "DATA", false)
	if err != nil {
		c.inTx = false
		return st, setAll(st, nil, err)
	}
	if r.Code != CodeStartMailInput {
		e := r.errOr(fmt.Errorf("protocol: client: unexpected reply to DATA: %s", r))
		c.endTx(ctx)
		return st, setAll(st, r, e)
	}
	return st, c.sendData(ctx, body, st)
}

// useBDAT says whether this transaction's message goes with BDAT.
func (c *Client) useBDAT() bool {
	_, chunking := c.ext["CHUNKING"]
	return chunking && (c.opts.Chunking || c.body == BodyBinaryMIME)
}

// setAll gives every status without an outcome reply r and error err,
// and returns err.
func setAll(st []RcptStatus, r *Reply, err error) error {
	for i := range st {
		if st[i].Reply == nil && st[i].Err == nil {
			st[i].Reply, st[i].Err = r, err
		}
	}
	return err
}

// endTx ends a transaction that did not complete, with RSET, so the
// connection can be reused. A failed RSET breaks the client (a pool then
// drops it), but is not the transaction's error.
func (c *Client) endTx(ctx context.Context) {
	if c.inTx && c.broken == nil {
		if err := c.Reset(ctx); err != nil && c.broken == nil {
			c.fail(ctx, fmt.Errorf("protocol: client: RSET refused: %w", err))
		}
	}
	c.inTx, c.accepted = false, 0
}

// sendData streams the message after 354 and reads the final replies.
func (c *Client) sendData(ctx context.Context, body io.Reader, st []RcptStatus) error {
	c.inTx = false
	block := c.opts.dur(c.opts.DataBlockTimeout, DefaultClientDataBlockTimeout)
	stop, err := c.begin(ctx, block)
	if err != nil {
		return setAll(st, nil, err)
	}
	n := crlfNormalizer{bol: true, dotStuff: true}
	bp := getDataBuf()
	defer dataBufs.Put(bp)
	in, out := (*bp)[:dataBlock], (*bp)[dataBlock:dataBlock]
	for {
		k, rerr := body.Read(in)
		if k > 0 {
			out = n.append(out[:0], in[:k])
			c.setDeadline(ctx, block)
			if _, err := c.bw.Write(out); err != nil {
				stop()
				return setAll(st, nil, c.fail(ctx, fmt.Errorf("protocol: client: sending message: %w", err)))
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			stop()
			// Ending the text with "." would deliver a truncated message:
			// closing the connection is the only way to abort DATA.
			c.fail(ctx, fmt.Errorf("protocol: client: message not sent: reading it: %w", rerr))
			return setAll(st, nil, c.broken)
		}
	}
	out = n.finish(out[:0])
	out = append(out, '.', '\r', '\n')
	c.setDeadline(ctx, block)
	_, err = c.bw.Write(out)
	if err == nil {
		err = c.bw.Flush()
	}
	stop()
	if err != nil {
		return setAll(st, nil, c.fail(ctx, fmt.Errorf("protocol: client: sending message: %w", err)))
	}
	return c.finalReplies(ctx, st)
}

// finalReplies reads the replies after the end of the message: one per
// recipient in LMTP, one for all in SMTP.
func (c *Client) finalReplies(ctx context.Context, st []RcptStatus) error {
	c.inTx, c.accepted = false, 0
	timeout := c.opts.dur(c.opts.FinalReplyTimeout, DefaultClientFinalReplyTimeout)
	n := len(st)
	if c.opts.Protocol != LMTP {
		n = 1
	}
	for i := 0; i < n; i++ {
		r, err := c.exchange(ctx, timeout, "", false)
		if err != nil {
			return setAll(st, nil, err)
		}
		if c.opts.Protocol == LMTP && r.Code != CodeServiceUnavailable {
			st[i].Reply, st[i].Err = r, r.Err()
			continue
		}
		// SMTP's one reply, or an LMTP server giving up (421) for all
		// recipients not answered yet.
		setAll(st, r, r.Err())
		if c.opts.Protocol == LMTP {
			return r.Err()
		}
	}
	return nil
}

// sendBDAT sends the message in BDAT chunks (RFC 3030 section 2) and
// reads the replies. Chunks are sent one at a time, each after the
// previous one's reply.
func (c *Client) sendBDAT(ctx context.Context, body io.Reader, st []RcptStatus) error {
	size := c.opts.ChunkSize
	if size <= 0 {
		size = DefaultClientChunkSize
	}
	binary := c.body == BodyBinaryMIME
	n := crlfNormalizer{bol: true}
	bp := getDataBuf()
	defer dataBufs.Put(bp)
	in := (*bp)[:min(size, dataBlock)]
	var chunk []byte
	if size == DefaultClientChunkSize {
		cp := getChunkBuf()
		defer chunkBufs.Put(cp)
		chunk = (*cp)[:0]
	} else {
		chunk = make([]byte, 0, size+2*dataBlock+2)
	}
	block := c.opts.dur(c.opts.DataBlockTimeout, DefaultClientDataBlockTimeout)
	eof := false
	for !eof {
		chunk = chunk[:0]
		for len(chunk) < size && !eof {
			k, rerr := body.Read(in[:min(len(in), size-len(chunk))])
			if binary {
				chunk = append(chunk, in[:k]...)
			} else {
				chunk = n.append(chunk, in[:k])
			}
			if rerr == io.EOF {
				eof = true
			} else if rerr != nil {
				// RFC 3030 section 4: RSET discards the chunks sent.
				err := fmt.Errorf("protocol: client: message not sent: reading it: %w", rerr)
				c.endTx(ctx)
				return setAll(st, nil, err)
			}
		}
		if eof && !binary {
			chunk = n.finish(chunk)
		}
		line := "BDAT " + strconv.Itoa(len(chunk))
		if eof {
			line += " LAST"
		}
		stop, err := c.begin(ctx, block)
		if err != nil {
			c.inTx = false
			return setAll(st, nil, err)
		}
		c.log.Trace().Str("dir", "out").Str("line", line).Msg("wire")
		c.writeLine(line)
		_, err = c.bw.Write(chunk)
		if err == nil {
			err = c.bw.Flush()
		}
		stop()
		if err != nil {
			c.inTx = false
			return setAll(st, nil, c.fail(ctx, fmt.Errorf("protocol: client: sending message: %w", err)))
		}
		if eof {
			return c.finalReplies(ctx, st)
		}
		r, err := c.exchange(ctx, block, "", false)
		if err != nil {
			c.inTx = false
			return setAll(st, nil, err)
		}
		if r.Code != CodeOK {
			e := r.errOr(fmt.Errorf("protocol: client: unexpected reply to BDAT: %s", r))
			c.endTx(ctx)
			return setAll(st, r, e)
		}
	}
	return nil
}

// Send runs a whole transaction: MAIL FROM with params (nil for none),
// RCPT TO for each recipient with its parameters, and the message from
// body (as Data describes). With PIPELINING offered and not disabled,
// MAIL, the RCPTs and DATA go in one write (RFC 2920; with more than 100
// recipients, in writes of 100 commands) and the replies are matched to
// the commands in order.
//
// It returns one status per recipient, index for index, whatever
// happens: refused at RCPT, refused or accepted after the message, or
// the reason nothing is known. err is non-nil when the transaction failed
// as a whole: MAIL refused (an *Error, also in every status), a local
// error before anything was sent, a body read error, or a connection
// failure (recipients without a reply get it). A refused DATA and
// negative final replies are per-recipient outcomes, err is then nil. A
// transaction that did not complete is reset with RSET, so the client
// can carry the next one unless Err says it is broken.
func (c *Client) Send(ctx context.Context, from Address, params *MailParams, rcpts []*Recipient, body io.Reader) ([]RcptStatus, error) {
	st := make([]RcptStatus, len(rcpts))
	if len(rcpts) == 0 {
		return st, errors.New("protocol: client: no recipients")
	}
	if c.broken != nil {
		return st, setAll(st, nil, c.broken)
	}
	if c.inTx {
		return st, setAll(st, nil, errors.New("protocol: client: a transaction is in progress"))
	}
	utf8 := false
	for _, r := range rcpts {
		utf8 = utf8 || !r.Address.IsASCII()
	}
	mail, utf8, err := c.mailLine(from, params, utf8)
	if err != nil {
		return st, setAll(st, nil, err)
	}
	lines := make([]string, 0, len(rcpts)+2)
	lines = append(lines, mail)
	for _, r := range rcpts {
		l, err := c.rcptLine(r.Address, &r.Params, utf8)
		if err != nil {
			return st, setAll(st, nil, err)
		}
		lines = append(lines, l)
	}
	c.body = ""
	if params != nil {
		c.body = BodyType(strings.ToUpper(string(params.Body)))
	}
	bdat := c.useBDAT()
	if !bdat {
		lines = append(lines, "DATA")
	}
	_, pipelining := c.ext["PIPELINING"]
	pipelining = pipelining && !c.opts.DisablePipelining
	batch := 1
	if pipelining {
		batch = maxPipelinedCommands
	}

	cmdTimeout := c.opts.dur(c.opts.CommandTimeout, DefaultClientCommandTimeout)
	var mailErr error
	var accepted []int
	var dataReply *Reply
	for start := 0; start < len(lines); start += batch {
		end := min(start+batch, len(lines))
		if !pipelining && (mailErr != nil || start == len(lines)-1 && !bdat && len(accepted) == 0) {
			// Without pipelining nothing is sent after a refused MAIL,
			// nor DATA without recipients.
			break
		}
		replies, err := c.pipeline(ctx, lines[start:end], cmdTimeout)
		for k, r := range replies {
			i := start + k
			switch {
			case i == 0:
				if r.Code != CodeOK {
					mailErr = r.errOr(fmt.Errorf("protocol: client: unexpected reply to MAIL: %s", r))
				} else {
					c.inTx, c.accepted, c.utf8 = true, 0, utf8
				}
			case i <= len(rcpts):
				st[i-1].Reply = r
				if mailErr != nil {
					st[i-1].Err = mailErr
				} else if r.Code != CodeOK && r.Code != CodeCannotVerify {
					st[i-1].Err = r.errOr(fmt.Errorf("protocol: client: unexpected reply to RCPT: %s", r))
				} else {
					st[i-1].Reply = nil // decided after the message
					accepted = append(accepted, i-1)
					c.accepted++
				}
			default:
				dataReply = r
			}
		}
		if err != nil {
			c.inTx = false
			for _, i := range accepted {
				st[i].Reply = nil
			}
			return st, setAll(st, nil, err)
		}
	}
	if mailErr != nil {
		for i := range st {
			st[i].Reply, st[i].Err = nil, mailErr
		}
		if dataReply != nil && dataReply.Code == CodeStartMailInput {
			c.abortData(ctx)
		}
		return st, mailErr
	}
	ast := make([]RcptStatus, len(accepted))
	var derr error
	switch {
	case len(accepted) == 0:
		if dataReply != nil && dataReply.Code == CodeStartMailInput {
			c.abortData(ctx)
		}
		c.endTx(ctx)
		return st, nil
	case bdat:
		derr = c.sendBDAT(ctx, body, ast)
	default:
		// DATA went with the last batch, pipelined or alone, and its
		// reply was read there.
		if dataReply.Code != CodeStartMailInput {
			setAll(ast, dataReply, dataReply.errOr(fmt.Errorf("protocol: client: unexpected reply to DATA: %s", dataReply)))
			c.endTx(ctx)
			break
		}
		derr = c.sendData(ctx, body, ast)
	}
	for k, i := range accepted {
		st[i] = ast[k]
	}
	if derr != nil && AsError(derr) != nil && c.broken == nil {
		// A refused chunk: a per-recipient outcome, like a refused DATA.
		derr = nil
	}
	return st, derr
}

// pipeline writes lines in one go and reads one reply per line. On a
// connection failure it returns the replies read so far and the error.
func (c *Client) pipeline(ctx context.Context, lines []string, timeout time.Duration) ([]*Reply, error) {
	stop, err := c.begin(ctx, timeout)
	if err != nil {
		return nil, err
	}
	defer stop()
	for _, l := range lines {
		c.log.Trace().Str("dir", "out").Str("line", l).Msg("wire")
		if err := c.writeLine(l); err != nil {
			return nil, c.fail(ctx, err)
		}
	}
	if err := c.bw.Flush(); err != nil {
		return nil, c.fail(ctx, err)
	}
	replies := make([]*Reply, 0, len(lines))
	for _, l := range lines {
		t := timeout
		if l == "DATA" {
			t = c.opts.dur(c.opts.DataInitTimeout, DefaultClientDataInitTimeout)
		}
		c.setDeadline(ctx, t)
		r, err := c.readReply(ctx, false)
		if err != nil {
			return replies, err
		}
		replies = append(replies, r)
		if c.broken != nil {
			// 421: the server is gone.
			return replies, c.broken
		}
	}
	return replies, nil
}

// abortData ends a DATA the server accepted although the transaction
// cannot go on (MAIL refused or no recipient, after pipelining): RFC 2920
// section 3.1 says to send the lone "." and ignore the reply.
func (c *Client) abortData(ctx context.Context) {
	r, err := c.exchange(ctx, c.opts.dur(c.opts.FinalReplyTimeout, DefaultClientFinalReplyTimeout), ".", false)
	if err == nil && r.Code == CodeOK {
		c.log.Warn().Str("reply", r.String()).Msg("server accepted an empty message without recipients")
	}
}

// dataBlock is the size of the blocks the message is read in. A block
// becomes at most twice as long on the wire (every octet a bare LF).
const dataBlock = 32 << 10

// Buffers for sending messages, shared by all Clients: a connection that
// waits in a pool holds none.
var (
	dataBufs  sync.Pool // *[]byte, dataBlock + 2*dataBlock + 2 octets: input block, output
	chunkBufs sync.Pool // *[]byte, a DefaultClientChunkSize chunk with room for one normalized block more
)

func getDataBuf() *[]byte {
	if p, ok := dataBufs.Get().(*[]byte); ok {
		return p
	}
	b := make([]byte, 3*dataBlock+2)
	return &b
}

func getChunkBuf() *[]byte {
	if p, ok := chunkBufs.Get().(*[]byte); ok {
		return p
	}
	b := make([]byte, DefaultClientChunkSize+2*dataBlock+2)
	return &b
}

// crlfNormalizer rewrites message text for the wire: a bare LF or CR
// becomes CRLF, CRLF stays, and with dotStuff a "." starting a line is
// doubled (RFC 5321 section 4.5.2). It keeps state across calls.
type crlfNormalizer struct {
	bol      bool // at the start of a line
	cr       bool // the last byte seen was a CR
	dotStuff bool
}

// append appends src, rewritten, to dst.
func (n *crlfNormalizer) append(dst, src []byte) []byte {
	for len(src) > 0 {
		if n.cr {
			n.cr = false
			dst = append(dst, '\r', '\n')
			n.bol = true
			if src[0] == '\n' {
				src = src[1:]
				continue
			}
		}
		if n.bol && n.dotStuff && src[0] == '.' {
			dst = append(dst, '.')
		}
		// Copy up to the next line ending in one go.
		i := 0
		for i < len(src) && src[i] != '\r' && src[i] != '\n' {
			i++
		}
		dst = append(dst, src[:i]...)
		if i > 0 {
			n.bol = false
		}
		if i == len(src) {
			break
		}
		if src[i] == '\n' {
			dst = append(dst, '\r', '\n')
			n.bol = true
		} else {
			n.cr = true
		}
		src = src[i+1:]
	}
	return dst
}

// finish ends the text with a line ending if it lacks one.
func (n *crlfNormalizer) finish(dst []byte) []byte {
	if n.cr || !n.bol {
		dst = append(dst, '\r', '\n')
	}
	n.cr, n.bol = false, true
	return dst
}
