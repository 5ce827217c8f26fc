package main

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestDeliveryConfigErrors: each problem the delivery package finds is
// reported once, at the file, line and key of the setting, found from the
// delivery.ConfigError's key path: [[domain.user]] after a users list,
// aliases by name, special folders by index, renamed settings.
func TestDeliveryConfigErrors(t *testing.T) {
	const head = "[[listener]]\naddress = \"127.0.0.1:2424\"\n[delivery.maildir]\nroot = \"mail\"\n"
	tests := []struct {
		name, text string
		want       []string
	}{
		{"user table after users list", head + "[[domain]]\nname = \"example.test\"\nusers = [\"a\", \"b\"]\n[[domain.user]]\nname = \"c\"\n[[domain.user]]\nname = \"d\"\nroute = { maildir = \"{nope}\" }\n",
			[]string{"test.toml:12: domain[0].user[1].route.maildir: user d@example.test: maildir: path template \"{nope}\": unknown placeholder {nope}"}},
		{"user listed twice in the users list", head + "[[domain]]\nname = \"example.test\"\nusers = [\"a\", \"A\"]\n",
			[]string{"test.toml:7: domain[0].users[1]: domain example.test: user A listed twice"}},
		{"special folder", strings.Replace(head, "root = \"mail\"\n", "root = \"mail\"\nspecial_folders = [\"Trash\", \"a.b\"]\n", 1) + "[[domain]]\nname = \"example.test\"\nany_user = true\n",
			[]string{`test.toml:5: delivery.maildir.special_folders[1]: special folder "a.b": want a top-level folder name, without dots or slashes`}},
		{"alias by name", head + "[[domain]]\nname = \"example.test\"\nusers = [\"a\"]\n[domain.aliases]\nx = [\"a\"]\ny = [\"nobody\"]\n",
			[]string{"test.toml:10: domain[0].aliases.y: domain example.test: alias y: target nobody is not a user (aliases do not chain)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := testConfig(t, tc.text)
			var ce configErrors
			if !errors.As(err, &ce) {
				t.Fatalf("error %v, want configErrors", err)
			}
			var got []string
			for _, e := range ce {
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
