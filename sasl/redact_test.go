package sasl

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// TestRedaction prints every secret-holding type every way a log line
// might, and checks that no secret material appears.
func TestRedaction(t *testing.T) {
	scram := rfcCredentials(t)
	cram := mustCRAM(t, "pencil")
	hash := mustHash(t, "pencil")
	user := User{PasswordHash: hash, Scram: &scram, CRAM: cram}
	secrets := []string{
		base64.StdEncoding.EncodeToString(scram.StoredKey),
		base64.StdEncoding.EncodeToString(scram.ServerKey),
		hex.EncodeToString(scram.StoredKey),
		hex.EncodeToString(scram.ServerKey),
		hex.EncodeToString(cram.ctx[:]),
		hash,
		"pencil",
	}
	values := []struct {
		name string
		v    any
	}{
		{"ScramCredentials", scram},
		{"*ScramCredentials", &scram},
		{"CRAMSecret", *cram},
		{"*CRAMSecret", cram},
		{"User", user},
		{"*User", &user},
		{"map of users", map[string]User{"u": user}},
		{"struct holding a User", struct{ U User }{user}},
	}
	for _, v := range values {
		t.Run(v.name, func(t *testing.T) {
			var outputs []string
			for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
				outputs = append(outputs, fmt.Sprintf(verb, v.v))
			}
			j, err := json.Marshal(v.v)
			if err != nil {
				t.Fatal(err)
			}
			outputs = append(outputs, string(j))
			var buf bytes.Buffer
			slog.New(slog.NewJSONHandler(&buf, nil)).Info("m", "v", v.v)
			slog.New(slog.NewTextHandler(&buf, nil)).Info("m", "v", v.v)
			outputs = append(outputs, buf.String())
			for _, out := range outputs {
				if !strings.Contains(out, redacted) {
					t.Errorf("output %q lacks %s", out, redacted)
				}
				for _, s := range secrets {
					if strings.Contains(strings.ToLower(out), strings.ToLower(s)) {
						t.Fatalf("output %q contains secret %q", out, s)
					}
				}
			}
		})
	}
	if scram.String() != redacted || cram.String() != redacted || user.String() != redacted {
		t.Fatal("String() does not redact")
	}
}
