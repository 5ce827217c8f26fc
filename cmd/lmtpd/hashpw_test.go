package main

import (
	"errors"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadPasswordLine(t *testing.T) {
	tests := []struct {
		in, want string
		err      error
	}{
		{"secret\n", "secret", nil},
		{"secret\r\n", "secret", nil},
		{"no newline", "no newline", nil},
		{"first\nsecond\n", "first", nil},
		{" spaces kept \n", " spaces kept ", nil},
		{"\n", "", errEmptyPassword},
		{"", "", errEmptyPassword},
	}
	for _, tc := range tests {
		got, err := readPasswordLine(strings.NewReader(tc.in))
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("readPasswordLine(%q) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
	if _, err := readPasswordLine(iotest.ErrReader(errors.New("broken"))); err == nil || err.Error() != "broken" {
		t.Errorf("read error: %v", err)
	}
}
