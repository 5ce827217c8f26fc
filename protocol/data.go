package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
)

// The DATA reader turns the text a client sends after "354" into the
// message (RFC 5321 section 4.1.1.4 and 4.5.2):
//
//   - The data ends only at CRLF "." CRLF, or at "." CRLF as the very first
//     line; the first CRLF of the terminator belongs to the message. A bare
//     CR or LF never ends the data and never starts a line for this purpose,
//     so none of "\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n" ends it: that is
//     what keeps the 2023 "SMTP smuggling" class (a second message hidden
//     behind a terminator that only some servers honour) out.
//   - A line that starts with '.' after a CRLF has that dot removed
//     (transparency, section 4.5.2).
//   - A CR or LF that is not part of a CRLF pair (section 2.3.8) is an
//     error, or with Normalize becomes CRLF.
//   - The size and text line length limits are enforced while streaming.
//
// The reader never holds more than the bufio.Reader's buffer: a message of
// any size costs constant memory. After an early stop it can skip to the
// real terminator (Drain), so that message text is never read as commands.
//
// The same reader checks the message text of BDAT (RFC 3030): with Chunked
// set it reads the concatenated chunks, which carry no terminator and no
// dot-stuffing and end where the source ends, and applies the same size,
// line length and bare line ending rules. With Binary (BODY=BINARYMIME)
// only the size limit applies. One rule, one place, whatever the command.

// dataOptions are the limits and the bare line ending policy of one DATA.
type dataOptions struct {
	// MaxBytes is the most message bytes (after unstuffing and
	// normalisation) that are returned; the next one makes Read fail with
	// ErrMessageTooBig. 0 or less means no limit.
	MaxBytes int64
	// MaxLineLength is the longest text line, CRLF not counted, that is
	// accepted (RFC 5321 section 4.5.3.1.6: 998); a longer one makes Read
	// fail with ErrTextLineTooLong. 0 or less means no limit.
	MaxLineLength int
	// Normalize turns every bare CR, bare LF and CR not followed by LF into
	// CRLF. When false (the default) the first one makes Read fail with
	// ErrBareLineEnding.
	Normalize bool
	// Chunked reads BDAT text: no terminator and no dot transparency; the
	// message ends at io.EOF from the source, and a CR that is the last
	// byte of the message is a bare CR.
	Chunked bool
	// Binary (with Chunked, for BODY=BINARYMIME, RFC 3030 section 3) turns
	// off the line rules: bytes pass unchanged, bare CR and LF and long
	// lines included; only MaxBytes applies.
	Binary bool
}

// scanStop says why dataReader.scan stopped.
type scanStop int

const (
	scanMore scanStop = iota // the buffered input is used up or too short to decide
	scanFull                 // the output buffer is full
	scanEnd                  // the terminator was consumed
	scanBare                 // a bare CR or LF, and Normalize is off
	scanLong                 // a text line longer than MaxLineLength
	scanBig                  // more than MaxBytes of message
)

const maxInt = int(^uint(0) >> 1)

var (
	// crlfDotCRLF is the end of data (RFC 5321 section 4.1.1.4).
	crlfDotCRLF = []byte("\r\n.\r\n")
	// errDrained is what Read returns after Drain skipped the rest of a
	// message the consumer had not read to its end.
	errDrained = errors.New("protocol: message data was skipped")
	// errDrainLimit is the cause when Drain gave up before the terminator.
	errDrainLimit = errors.New("protocol: no end of data within the drain limit")
)

// dataReader is an io.Reader over the message text of one DATA command. It
// reads from br, which it must be the only user of until Done or Broken is
// true; afterwards br is positioned right after the terminator and the
// connection continues with the next command. A dataReader is not safe for
// concurrent use.
//
// Read errors are sticky. They are io.EOF at the terminator;
// ErrMessageTooBig, ErrTextLineTooLong or ErrBareLineEnding (returned as
// they are, for errors.Is) when the text breaks a rule, after which the
// caller must Drain; or an error wrapping ErrDataTimeout or
// ErrConnectionLost and the cause when reading br failed, after which
// Broken is true and the connection must be closed.
type dataReader struct {
	br  *bufio.Reader
	opt dataOptions
	// onEnd, if set, is called once, synchronously, from the Read or Drain
	// call that consumes the terminator.
	onEnd func()

	bol       bool  // the consumed input is empty or ends with CRLF: a line starts
	lineLen   int   // bytes of the current text line returned so far, CRLF excluded
	size      int64 // bytes returned
	pendingLF bool  // a returned CR still owes its LF to the next Read
	atEOF     bool  // Chunked: the source is used up; a final CR is bare
	done      bool  // the terminator was consumed
	broken    bool  // reading br failed, or Drain gave up
	brokenErr error // why broken is set
	err       error // sticky error
}

// newDataReader returns a reader for the message text that follows the 354
// reply, read from br.
func newDataReader(br *bufio.Reader, opt dataOptions) *dataReader {
	return &dataReader{br: br, opt: opt, bol: true}
}

// reset makes r a fresh reader over br, reusing r's memory (the server
// keeps one per connection).
func (r *dataReader) reset(br *bufio.Reader, opt dataOptions) {
	*r = dataReader{br: br, opt: opt, bol: true}
}

// Done reports whether the terminator has been consumed.
func (r *dataReader) Done() bool { return r.done }

// Size returns the number of message bytes returned by Read so far.
func (r *dataReader) Size() int64 { return r.size }

// Broken reports whether reading the connection failed (or Drain gave up),
// so that what follows on it cannot be trusted to be a command.
func (r *dataReader) Broken() bool { return r.broken }

// Read returns message text: CRLF line endings, dot-unstuffed, without the
// terminator. It returns io.EOF (possibly with the last bytes) once the
// terminator has been consumed. It blocks only when it has nothing to
// return yet.
func (r *dataReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if r.opt.Binary {
		return r.readBinary(p)
	}
	n := 0
	if r.pendingLF {
		p[0] = '\n'
		n = 1
		r.pendingLF = false
		r.size++
	}
	need := 1 // input bytes scan needs buffered to make progress
	for n < len(p) {
		if r.br.Buffered() < need {
			if n > 0 {
				return n, nil
			}
			if _, err := r.br.Peek(need); err != nil {
				if !r.opt.Chunked || err != io.EOF {
					return n, r.readFailed(err)
				}
				// The end of the BDAT text: what is left (at most a CR
				// waiting for its LF) is decided without a next byte.
				if r.br.Buffered() == 0 {
					r.finish()
					return n, io.EOF
				}
				r.atEOF = true
			}
		}
		buf, _ := r.br.Peek(r.br.Buffered())
		in, out, stop := r.scan(buf, p[n:])
		if _, err := r.br.Discard(in); err != nil {
			// Cannot happen: in <= Buffered.
			return n, r.readFailed(err)
		}
		n += out
		r.size += int64(out)
		switch stop {
		case scanMore:
			need = len(buf) - in + 1
		case scanFull:
			return n, nil
		case scanEnd:
			r.finish()
			return n, io.EOF
		case scanBare:
			r.err = ErrBareLineEnding
			return n, r.err
		case scanLong:
			r.err = ErrTextLineTooLong
			return n, r.err
		case scanBig:
			r.err = ErrMessageTooBig
			return n, r.err
		}
	}
	return n, nil
}

// scan turns the buffered input buf into message text in out, as far as
// both allow, and returns how many input bytes it consumed and output bytes
// it produced. It consumes only bytes it has decided about: a CR waits for
// the byte after it, a dot at the start of a line for the two after it.
//
// Runs of complete clean lines are found with bytes.IndexByte and copied
// at once; the byte-level cases (dots, bare line endings, full buffers)
// are handled one event at a time.
func (r *dataReader) scan(buf, out []byte) (i, o int, stop scanStop) {
	bud := maxInt // output bytes the size limit still allows
	if r.opt.MaxBytes > 0 {
		if rem := r.opt.MaxBytes - r.size; rem < int64(bud) {
			bud = int(rem)
		}
	}
	lim := min(len(out), bud)
	maxLine := r.opt.MaxLineLength
	// lfAt caches the index of the first LF at or after the position last
	// searched from, len(buf) if there is none, so that text with many
	// bare CRs (normalised) is not searched for its LF once per CR.
	lfAt := -1
	for {
		if r.bol && r.opt.Chunked {
			r.bol = false // no dot transparency in BDAT text
		}
		if r.bol {
			if i >= len(buf) {
				return i, o, scanMore
			}
			if buf[i] == '.' {
				if i+1 >= len(buf) {
					return i, o, scanMore
				}
				if buf[i+1] == '\r' {
					if i+2 >= len(buf) {
						return i, o, scanMore
					}
					if buf[i+2] == '\n' {
						return i + 3, o, scanEnd
					}
				}
				// A stuffed dot (RFC 5321 section 4.5.2).
				i++
			}
			r.bol = false
		}

		// Whole lines ending in CRLF, with no other CR inside, within the
		// limits, and not followed by a dot: copied verbatim.
		j := i
		for {
			rest := buf[j:]
			lf := nextLF(buf, j, &lfAt) - j
			if lf < 1 || lf == len(rest) || rest[lf-1] != '\r' || bytes.IndexByte(rest[:lf-1], '\r') >= 0 {
				break
			}
			if maxLine > 0 && r.lineLen+lf-1 > maxLine || o+(j-i)+lf+1 > lim {
				break
			}
			j += lf + 1
			r.lineLen = 0
			if j == len(buf) || buf[j] == '.' {
				r.bol = true
				break
			}
		}
		if j > i {
			copy(out[o:], buf[i:j])
			o += j - i
			i = j
			if r.bol {
				continue
			}
		}

		// Text up to the next CR or LF, then that line ending.
		rest := buf[i:]
		end := nextLF(buf, i, &lfAt) - i
		if cr := bytes.IndexByte(rest[:end], '\r'); cr >= 0 {
			end = cr
		}
		if end > 0 {
			if maxLine > 0 && r.lineLen+end > maxLine {
				return i, o, scanLong
			}
			if end > bud-o {
				return i, o, scanBig
			}
			k := copy(out[o:], rest[:end])
			i += k
			o += k
			r.lineLen += k
			if k < end {
				return i, o, scanFull
			}
		}
		if i >= len(buf) {
			return i, o, scanMore
		}
		n := 1 // input bytes of this line ending
		if buf[i] == '\r' {
			switch {
			case i+1 < len(buf):
				if buf[i+1] == '\n' {
					n = 2
				}
			case !r.atEOF:
				return i, o, scanMore
			}
		}
		if n == 1 && !r.opt.Normalize {
			return i, o, scanBare
		}
		// A CRLF, or a bare CR or LF normalised to one.
		if bud-o < 2 {
			return i, o, scanBig
		}
		switch len(out) - o {
		case 0:
			return i, o, scanFull
		case 1:
			out[o] = '\r'
			o++
			r.pendingLF = true
		default:
			out[o] = '\r'
			out[o+1] = '\n'
			o += 2
		}
		i += n
		r.lineLen = 0
		// Only a real CRLF starts a line where a dot is special.
		r.bol = n == 2
		if r.pendingLF {
			return i, o, scanFull
		}
	}
}

// readBinary is Read for BODY=BINARYMIME: the bytes as they are, under the
// size limit only. Large reads go straight from the connection into p.
func (r *dataReader) readBinary(p []byte) (int, error) {
	if max := r.opt.MaxBytes; max > 0 {
		if r.size >= max {
			// At the limit: the message may still end here.
			if _, err := r.br.Peek(1); err == io.EOF {
				r.finish()
				return 0, io.EOF
			} else if err != nil {
				return 0, r.readFailed(err)
			}
			r.err = ErrMessageTooBig
			return 0, r.err
		}
		if rem := max - r.size; int64(len(p)) > rem {
			p = p[:rem]
		}
	}
	n, err := r.br.Read(p)
	r.size += int64(n)
	switch {
	case err == io.EOF:
		r.finish()
		return n, io.EOF
	case err != nil:
		return n, r.readFailed(err)
	}
	return n, nil
}

// nextLF returns the index of the first LF in buf at or after from, or
// len(buf), using and updating the cached answer *at of an earlier search.
func nextLF(buf []byte, from int, at *int) int {
	if *at < from {
		if k := bytes.IndexByte(buf[from:], '\n'); k >= 0 {
			*at = from + k
		} else {
			*at = len(buf)
		}
	}
	return *at
}

// Drain consumes the rest of the message up to and including the real
// terminator without returning it, for when the consumer stopped early (a
// Read error, or it stopped reading). It reads at most limit more bytes
// (0 or less: no limit). It returns nil once the terminator is consumed,
// and at once if it already was. Otherwise, or if reading fails, it
// returns an error wrapping ErrConnectionLost or ErrDataTimeout, Broken
// becomes true and the caller must close the connection.
//
// After Drain, Read returns the error it returned before, or an error
// saying the message was skipped if there was none.
func (r *dataReader) Drain(limit int64) error {
	if r.done {
		return nil
	}
	if r.broken {
		return r.brokenErr
	}
	r.pendingLF = false
	if r.err == nil {
		r.err = errDrained
	}
	var used int64
	need := 1
	for {
		if limit > 0 && used+int64(need) > limit {
			return r.fail(fmt.Errorf("%w: %w", ErrConnectionLost, errDrainLimit))
		}
		if r.br.Buffered() < need {
			if _, err := r.br.Peek(need); err != nil {
				return r.readFailed(err)
			}
		}
		buf, _ := r.br.Peek(r.br.Buffered())
		if limit > 0 && int64(len(buf)) > limit-used {
			buf = buf[:limit-used]
		}
		in, end := r.skip(buf)
		if _, err := r.br.Discard(in); err != nil {
			return r.readFailed(err)
		}
		used += int64(in)
		if end {
			r.finish()
			return nil
		}
		need = len(buf) - in + 1
	}
}

// skip is scan without output and without rules: it looks for the
// terminator in buf and returns how much of buf to consume and whether
// that includes the terminator. Since every CRLF in the input starts a
// line, the terminator is the first CRLF "." CRLF, or "." CRLF right at a
// line start.
func (r *dataReader) skip(buf []byte) (int, bool) {
	if r.bol {
		switch {
		case len(buf) == 0 || buf[0] == '.' && (len(buf) == 1 || buf[1] == '\r' && len(buf) == 2):
			return 0, false
		case bytes.HasPrefix(buf, crlfDotCRLF[2:]):
			return 3, true
		}
		r.bol = false
	}
	if k := bytes.Index(buf, crlfDotCRLF); k >= 0 {
		return k + len(crlfDotCRLF), true
	}
	// The last four bytes may be the start of a terminator.
	if keep := len(crlfDotCRLF) - 1; len(buf) > keep {
		return len(buf) - keep, false
	}
	return 0, false
}

// finish records that the terminator was consumed.
func (r *dataReader) finish() {
	r.done = true
	r.pendingLF = false
	if r.err == nil {
		r.err = io.EOF
	}
	if f := r.onEnd; f != nil {
		r.onEnd = nil
		f()
	}
}

// readFailed records a read error from br: a timeout becomes
// ErrDataTimeout, anything else ErrConnectionLost (an EOF in the middle of
// a message is unexpected). Both wrap the cause.
func (r *dataReader) readFailed(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
		return r.fail(fmt.Errorf("%w: %w", ErrDataTimeout, err))
	}
	return r.fail(fmt.Errorf("%w: %w", ErrConnectionLost, err))
}

// fail marks the connection unusable. err becomes the sticky error unless
// a rule was already broken, which stays what Read reports.
func (r *dataReader) fail(err error) error {
	r.broken = true
	r.brokenErr = err
	if r.err == nil || r.err == errDrained {
		r.err = err
	}
	return err
}
