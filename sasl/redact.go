package sasl

import (
	"fmt"
	"io"
	"log/slog"
)

// redacted is what every secret-holding type prints, whatever the verb or
// the logging library.
const redacted = "[REDACTED]"

// The secret-holding types (ScramCredentials, CRAMSecret, User) implement
// fmt.Formatter, fmt.Stringer, json.Marshaler and slog.LogValuer with the
// helpers below, so that fmt's %v/%+v/%#v/%s/%x, zerolog's Interface and
// Stringer fields, encoding/json and log/slog all print "[REDACTED]".
// Their text encodings are produced only by explicit Encode methods.

func formatRedacted(f fmt.State) { _, _ = io.WriteString(f, redacted) }

func jsonRedacted() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

func slogRedacted() slog.Value { return slog.StringValue(redacted) }
