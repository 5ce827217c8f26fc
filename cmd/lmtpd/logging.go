package main

import (
	"bytes"
	"io"
	"log/syslog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
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
	// sys, when set, takes the lines instead of w, each with its level as
	// the syslog severity ([log] output = "syslog").
	sys *syslogOutput
}

// WriteLevel implements zerolog.LevelWriter.
func (o *logOutput) WriteLevel(l zerolog.Level, p []byte) (int, error) {
	if l < zerolog.Level(o.level.Load()) {
		return len(p), nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.sys != nil {
		return len(p), o.sys.write(l, p)
	}
	return o.w.Write(p)
}

// Write implements io.Writer for events without a level.
func (o *logOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.sys != nil {
		return len(p), o.sys.write(zerolog.NoLevel, p)
	}
	return o.w.Write(p)
}

// close closes the syslog connection, if any.
func (o *logOutput) close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.sys != nil {
		return o.sys.w.Close()
	}
	return nil
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
	// Durations are written as milliseconds (a float), in fields named
	// *_ms throughout lmtpd, so that their unit is in their name.
	zerolog.DurationFieldInteger = false
	zerolog.DurationFieldUnit = time.Millisecond
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
	out := &logOutput{w: w}
	if format == "console" || format == "auto" && term {
		out.w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	}
	out.setLevel(level)
	return zerolog.New(out).With().Timestamp().Logger(), out
}

// isTerminal reports whether f is a terminal (its terminal state can be read).
func isTerminal(f *os.File) bool {
	var t syscall.Termios
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), ioctlGetTermios, uintptr(unsafe.Pointer(&t)))
	return errno == 0
}

// openLog returns the process logger the [log] table asks for: on stderr
// (newLogger), or to the syslog daemon with output = "syslog". Syslog
// lines are JSON, or with format = "console" the console format without
// colours; each goes with its level as severity (trace and debug: debug,
// warn: warning, error: err) and the configured facility, tagged lmtpd,
// in the format Go's log/syslog writes (RFC 3164's, with the timestamp
// and no host name, to a local socket).
func openLog(lc logConfig, level zerolog.Level, stderr *os.File) (zerolog.Logger, *logOutput, error) {
	if lc.Output != "syslog" {
		log, out := newLogger(lc.Format, level, stderr, isTerminal(stderr))
		return log, out, nil
	}
	w, err := dialSyslog(lc)
	if err != nil {
		return zerolog.Logger{}, nil, err
	}
	log, out := newLogger("json", level, io.Discard, false)
	out.sys = &syslogOutput{w: w, console: lc.Format == "console"}
	return log, out, nil
}

// syslogFacilities are the facility names of [log] facility.
var syslogFacilities = map[string]syslog.Priority{
	"kern": syslog.LOG_KERN, "user": syslog.LOG_USER, "mail": syslog.LOG_MAIL, "daemon": syslog.LOG_DAEMON,
	"auth": syslog.LOG_AUTH, "syslog": syslog.LOG_SYSLOG, "lpr": syslog.LOG_LPR, "news": syslog.LOG_NEWS,
	"uucp": syslog.LOG_UUCP, "cron": syslog.LOG_CRON, "authpriv": syslog.LOG_AUTHPRIV, "ftp": syslog.LOG_FTP,
	"local0": syslog.LOG_LOCAL0, "local1": syslog.LOG_LOCAL1, "local2": syslog.LOG_LOCAL2, "local3": syslog.LOG_LOCAL3,
	"local4": syslog.LOG_LOCAL4, "local5": syslog.LOG_LOCAL5, "local6": syslog.LOG_LOCAL6, "local7": syslog.LOG_LOCAL7,
}

// syslogTag is the tag (APP-NAME) of lmtpd's syslog lines.
const syslogTag = "lmtpd"

// dialSyslog connects to the syslog daemon: the system's socket, or
// [log] syslog_socket (a unix datagram socket, else a stream one).
func dialSyslog(lc logConfig) (*syslog.Writer, error) {
	prio := syslogFacilities[lc.Facility] | syslog.LOG_INFO
	if lc.SyslogSocket == "" {
		return syslog.New(prio, syslogTag)
	}
	w, err := syslog.Dial("unixgram", lc.SyslogSocket, prio, syslogTag)
	if err != nil {
		var serr error
		if w, serr = syslog.Dial("unix", lc.SyslogSocket, prio, syslogTag); serr != nil {
			return nil, err
		}
	}
	return w, nil
}

// syslogOutput writes log lines to syslog with their severity.
type syslogOutput struct {
	w       *syslog.Writer
	console bool // the console format, else JSON
}

func (s *syslogOutput) write(l zerolog.Level, p []byte) error {
	if s.console {
		var b bytes.Buffer
		cw := zerolog.ConsoleWriter{Out: &b, NoColor: true, PartsExclude: []string{zerolog.TimestampFieldName}}
		if _, err := cw.Write(p); err == nil {
			p = b.Bytes()
		}
	}
	m := strings.TrimSuffix(string(p), "\n")
	switch {
	case l <= zerolog.DebugLevel && l != zerolog.NoLevel:
		return s.w.Debug(m)
	case l == zerolog.WarnLevel:
		return s.w.Warning(m)
	case l == zerolog.ErrorLevel:
		return s.w.Err(m)
	case l == zerolog.FatalLevel:
		return s.w.Crit(m)
	case l == zerolog.PanicLevel:
		return s.w.Emerg(m)
	}
	return s.w.Info(m)
}
