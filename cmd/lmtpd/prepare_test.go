package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/lmtpd/lmtpd/delivery"
)

func TestSystemCondition(t *testing.T) {
	sys := &configError{File: "f", Key: "delivery.maildir.root", Err: &systemError{errors.New("not writable")}}
	text := &configError{File: "f", Key: "log.level", Err: errors.New("expected a string")}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"system only", configErrors{sys}, true},
		{"text only", configErrors{text}, false},
		{"both", configErrors{sys, text}, false},
		{"unreadable file", fmt.Errorf("f: %w", &os.PathError{Op: "open", Path: "f", Err: syscall.EACCES}), true},
		{"errno", fmt.Errorf("x: %w", syscall.EROFS), true},
		{"plain error", errors.New("syntax"), false},
		{"empty list", configErrors{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := systemCondition(tc.err); got != tc.want {
				t.Errorf("systemCondition = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPrepareDelivery(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "a", "b")
	if err := prepareDelivery(&delivery.Config{Maildir: delivery.MaildirConfig{Root: root}}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() || fi.Mode().Perm()&^0o750 != 0 { // 0750 less the umask
		t.Errorf("root: %v %v", fi, err)
	}
	if err := prepareDelivery(&delivery.Config{}); err != nil {
		t.Errorf("no root: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "file"), nil, 0o600)
	err := prepareDelivery(&delivery.Config{Maildir: delivery.MaildirConfig{Root: filepath.Join(dir, "file", "x")}})
	if err == nil || !systemCondition(err) {
		t.Errorf("a file in the way: %v (system condition %v)", err, systemCondition(err))
	}
}
