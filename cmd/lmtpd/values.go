package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// duration is a time.Duration written in the configuration as a Go
// duration string: "30s", "5m", "1h30m". A bare number is refused, since
// its unit would be a guess.
type duration time.Duration

func (d *duration) decodeTOML(v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("expected a duration string such as \"30s\" or \"5m\", found %s", tomlTypeName(v))
	}
	x, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("invalid duration %q: use a number with a unit (ms, s, m, h), such as \"30s\" or \"5m\"", s)
	}
	if x < 0 {
		return fmt.Errorf("invalid duration %q: must not be negative", s)
	}
	*d = duration(x)
	return nil
}

// MarshalText writes the duration the short way: "5m" rather than "5m0s".
func (d duration) MarshalText() ([]byte, error) {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return []byte(s), nil
}

// size is a number of bytes, written as an integer (bytes) or a string
// with a unit: "512KiB", "50MiB", "1GiB" (powers of 1024; "K", "M", "G"
// alone mean the same), or "50MB", "1GB" (powers of 1000). It is never
// negative.
type size int64

var sizeUnits = []struct {
	name string
	mult int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40},
	{"B", 1},
}

// parseSize parses a size string; see size.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	num, mult := t, int64(1)
	for _, u := range sizeUnits {
		if len(t) > len(u.name) && strings.EqualFold(t[len(t)-len(u.name):], u.name) {
			num, mult = strings.TrimSpace(t[:len(t)-len(u.name)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid size %q: use bytes or a number with a unit, such as \"512KiB\", \"50MiB\" or \"1G\"", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return n * mult, nil
}

func (z *size) decodeTOML(v any) error {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return fmt.Errorf("invalid size %d: must not be negative", x)
		}
		*z = size(x)
		return nil
	case string:
		n, err := parseSize(x)
		if err != nil {
			return err
		}
		*z = size(n)
		return nil
	}
	return fmt.Errorf("expected a size such as \"50MiB\" or a number of bytes, found %s", tomlTypeName(v))
}

// MarshalText writes the size with the largest binary unit that divides
// it exactly: "50MiB", "256KiB", or plain bytes.
func (z size) MarshalText() ([]byte, error) {
	n := int64(z)
	for _, u := range []struct {
		name string
		mult int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.mult == 0 {
			return []byte(strconv.FormatInt(n/u.mult, 10) + u.name), nil
		}
	}
	return []byte(strconv.FormatInt(n, 10)), nil
}

// fileMode is a permission mode written as an octal string ("0660") or a
// TOML octal integer (0o660).
type fileMode uint32

func (m *fileMode) decodeTOML(v any) error {
	var n int64
	switch x := v.(type) {
	case int64:
		n = x
	case string:
		var err error
		if n, err = strconv.ParseInt(strings.TrimPrefix(x, "0o"), 8, 32); err != nil {
			return fmt.Errorf("invalid mode %q: use octal digits such as \"0660\"", x)
		}
	default:
		return fmt.Errorf("expected an octal mode string such as \"0660\", found %s", tomlTypeName(v))
	}
	if n < 0 || n > 0o777 {
		return fmt.Errorf("invalid mode %#o: only permission bits (0000 to 0777) are allowed", n)
	}
	*m = fileMode(n)
	return nil
}

// MarshalText writes the mode as four octal digits.
func (m fileMode) MarshalText() ([]byte, error) {
	return []byte(fmt.Sprintf("%04o", uint32(m))), nil
}
