package socketmap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Errors of ReadNetstring. ErrTooLong and ErrTruncated wrap ErrNetstring.
var (
	// ErrNetstring: the input is not a netstring.
	ErrNetstring = errors.New("socketmap: malformed netstring")
	// ErrTooLong: the announced length is over the limit.
	ErrTooLong = fmt.Errorf("%w: too long", ErrNetstring)
	// ErrTruncated: the input ended inside a netstring.
	ErrTruncated = fmt.Errorf("%w: end of input inside a netstring", ErrNetstring)
)

// ReadNetstring reads one netstring from br and returns its payload, at
// most max bytes long (max < 0: no limit but 2^40, which no length can
// pass). It returns io.EOF, and nothing
// else, when br ends before the first byte; an error wrapping ErrNetstring
// when the input is not a netstring: an empty length, a leading zero
// before other digits (djb's definition forbids it; Postfix's reader
// tolerates it but its writer never sends one), a byte that is neither a
// digit nor the colon, a length over max (detected from the digits, before
// anything is allocated), a missing comma, or end of input inside it; or
// br's read error. After an error the stream's position is undefined.
func ReadNetstring(br *bufio.Reader, max int) ([]byte, error) {
	n, digits := 0, 0
	for {
		c, err := br.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				if digits == 0 {
					return nil, io.EOF
				}
				return nil, ErrTruncated
			}
			return nil, err
		}
		if c == ':' {
			break
		}
		if c < '0' || c > '9' {
			return nil, fmt.Errorf("%w: %q in the length", ErrNetstring, c)
		}
		if digits == 1 && n == 0 {
			return nil, fmt.Errorf("%w: leading zero in the length", ErrNetstring)
		}
		digits++
		n = n*10 + int(c-'0')
		if max >= 0 && n > max || n > 1<<40 {
			return nil, ErrTooLong
		}
	}
	if digits == 0 {
		return nil, fmt.Errorf("%w: empty length", ErrNetstring)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(br, data); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, ErrTruncated
		}
		return nil, err
	}
	c, err := br.ReadByte()
	switch {
	case errors.Is(err, io.EOF):
		return nil, ErrTruncated
	case err != nil:
		return nil, err
	case c != ',':
		return nil, fmt.Errorf("%w: %q instead of the final comma", ErrNetstring, c)
	}
	return data, nil
}

// AppendNetstring appends data as a netstring to dst.
func AppendNetstring(dst, data []byte) []byte {
	dst = strconv.AppendInt(dst, int64(len(data)), 10)
	dst = append(dst, ':')
	dst = append(dst, data...)
	return append(dst, ',')
}
