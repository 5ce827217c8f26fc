package maildir

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"testing"

	"github.com/lmtpd/lmtpd/protocol"
)

func TestClassify(t *testing.T) {
	own := protocol.NewError(550, protocol.EnhancedCode{5, 1, 1}, "own")
	tests := []struct {
		name string
		err  error
		code int
		ec   protocol.EnhancedCode
		hint bool
	}{
		{"enospc", &fs.PathError{Op: "write", Err: syscall.ENOSPC}, 452, protocol.EnhancedCode{4, 3, 1}, false},
		{"edquot", &fs.PathError{Op: "write", Err: syscall.EDQUOT}, 552, protocol.EnhancedCode{5, 2, 2}, false},
		{"too big", fmt.Errorf("x: %w", ErrTooBig), 552, protocol.EnhancedCode{5, 3, 4}, false},
		{"eacces", &fs.PathError{Op: "open", Err: syscall.EACCES}, 451, protocol.EnhancedCode{4, 3, 5}, true},
		{"eperm", syscall.EPERM, 451, protocol.EnhancedCode{4, 3, 5}, true},
		{"erofs", syscall.EROFS, 451, protocol.EnhancedCode{4, 3, 5}, true},
		{"eloop", syscall.ELOOP, 451, protocol.EnhancedCode{4, 3, 5}, true},
		{"enotdir", syscall.ENOTDIR, 451, protocol.EnhancedCode{4, 3, 5}, true},
		{"escape", errors.New("openat a: path escapes from parent"), 451, protocol.EnhancedCode{4, 3, 5}, true},
		{"root", &RootError{Dir: "/m", Err: syscall.ENOENT}, 451, protocol.EnhancedCode{4, 3, 5}, true},
		{"eio", syscall.EIO, 451, protocol.EnhancedCode{4, 3, 0}, false},
		{"other", errors.New("x"), 451, protocol.EnhancedCode{4, 3, 0}, false},
		{"protocol error kept", fmt.Errorf("w: %w", own), 550, protocol.EnhancedCode{5, 1, 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Classify(tt.err)
			if r.Code != tt.code || r.EnhancedCode != tt.ec {
				t.Errorf("Classify = %d %v, want %d %v", r.Code, r.EnhancedCode, tt.code, tt.ec)
			}
			if !errors.Is(r, tt.err) && r != own {
				t.Errorf("reply does not wrap the cause")
			}
			if (Hint(tt.err) != "") != tt.hint {
				t.Errorf("Hint = %q, want one: %v", Hint(tt.err), tt.hint)
			}
		})
	}
	if Classify(nil) != nil {
		t.Error("Classify(nil) != nil")
	}
}
