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

	// With a tap, info lines reach it though the level hides them.
	var tapped []string
	out.setTap(func(p []byte) { tapped = append(tapped, string(p)) })
	buf.Reset()
	log.Info().Msg("for the tap")
	log.Debug().Msg("not even for the tap")
	if buf.Len() != 0 || len(tapped) != 1 || !strings.Contains(tapped[0], "for the tap") {
		t.Errorf("written %q, tapped %q", buf.String(), tapped)
	}
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
