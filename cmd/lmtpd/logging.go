package main

import (
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/rs/zerolog"
)

// logOutput is the writer under every logger of the process. It filters by
// the configured level itself, so that the level can change on SIGHUP
// without touching the loggers the servers hold. It is safe for concurrent
// use.
type logOutput struct {
	mu    sync.Mutex // serialises writes to w (ConsoleWriter is not safe)
	w     io.Writer
	level atomic.Int32
}

// WriteLevel implements zerolog.LevelWriter.
func (o *logOutput) WriteLevel(l zerolog.Level, p []byte) (int, error) {
	if l < zerolog.Level(o.level.Load()) {
		return len(p), nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.w.Write(p)
}

// Write implements io.Writer for events without a level.
func (o *logOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.w.Write(p)
}

// setLevel makes l the level written.
func (o *logOutput) setLevel(l zerolog.Level) {
	o.level.Store(int32(l))
	zerolog.SetGlobalLevel(l)
}

// newLogger returns the process logger writing to w (stderr): JSON, or
// the human-readable console format when format is "console", or "auto"
// and w is a terminal (term).
func newLogger(format string, level zerolog.Level, w io.Writer, term bool) (zerolog.Logger, *logOutput) {
	zerolog.DurationFieldInteger = false
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
	out := &logOutput{w: w}
	if format == "console" || format == "auto" && term {
		out.w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	}
	out.setLevel(level)
	return zerolog.New(out).With().Timestamp().Logger(), out
}

// isTerminal reports whether f is a terminal (TCGETS succeeds).
func isTerminal(f *os.File) bool {
	var t syscall.Termios
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TCGETS, uintptr(unsafe.Pointer(&t)))
	return errno == 0
}
