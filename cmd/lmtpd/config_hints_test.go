package main

import (
	"reflect"
	"testing"
)

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"user", "users", 1},
		{"socket_gruop", "socket_group", 1}, // a transposition counts one
		{"sockt_mode", "socket_mode", 1},
		{"hostnme", "hostname", 1},
		{"abc", "", 3},
		{"colour", "name", 6},
	} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := editDistance(tc.b, tc.a); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.b, tc.a, got, tc.want)
		}
	}
}

func TestClosestKeys(t *testing.T) {
	keys := tableKeys(reflect.TypeFor[listenerConfig]())
	for _, tc := range []struct {
		key  string
		want []string
	}{
		{"socket_grop", []string{"socket_group"}},
		{"SOCKET_GROUP", []string{"socket_group"}},
		{"max_recipient", []string{"max_recipients"}},
		{"colour", nil},
		{"tsl", []string{"tls"}},
		{"x", nil}, // one letter is close to nothing worth naming
	} {
		if got := closestKeys(tc.key, keys); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("closestKeys(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
}

func TestTablesWithKey(t *testing.T) {
	for key, want := range map[string][]string{
		"root":          {"[delivery.maildir]"},
		"socket_group":  {"[[listener]]"},
		"password_hash": {"[[auth.user]]"},
		"nothing":       nil,
	} {
		if got := tablesWithKey(key); !reflect.DeepEqual(got, want) {
			t.Errorf("tablesWithKey(%q) = %q, want %q", key, got, want)
		}
	}
}
