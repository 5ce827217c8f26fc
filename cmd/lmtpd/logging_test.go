package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestLogOutput(t *testing.T) {
	defer zerolog.SetGlobalLevel(zerolog.TraceLevel)
	var buf bytes.Buffer
	log, out := newLogger("json", zerolog.WarnLevel, &buf, false)
	log.Info().Msg("hidden")
	log.Warn().Msg("shown")
	if got := buf.String(); strings.Contains(got, "hidden") || !strings.Contains(got, `"message":"shown"`) {
		t.Errorf("warn level wrote %q", got)
	}

	buf.Reset()
	out.setLevel(zerolog.DebugLevel)
	log.Debug().Msg("now shown")
	if !strings.Contains(buf.String(), "now shown") {
		t.Errorf("level change not applied: %q", buf.String())
	}

	buf.Reset()
	clog, _ := newLogger("auto", zerolog.InfoLevel, &buf, true)
	clog.Info().Str("k", "v").Msg("console")
	if got := buf.String(); strings.HasPrefix(got, "{") || !strings.Contains(got, "console") || !strings.Contains(got, "k=") {
		t.Errorf("console format on a terminal: %q", got)
	}
}
