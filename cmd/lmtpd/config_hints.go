package main

// Hints for the configuration mistakes people make most: a key misspelt
// or put under the wrong table header, a mode written as a TOML integer
// with a leading zero, and one key written for its neighbour (users, a
// list of names, where user, a list of tables, was meant, or the other
// way round). Each turns a parser's or decoder's message into one that
// says what to write instead.

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// tableKeys returns the keys valid in the table that t (a struct type)
// decodes.
func tableKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if name != "" && name != "-" && t.Field(i).IsExported() {
			keys = append(keys, name)
		}
	}
	return keys
}

// closestKeys returns the keys of candidates within a small edit distance
// of key (a third of its length, at most 3: none for keys of one or two
// letters, which are close to everything short), the closest first; none
// if key is far from all of them.
func closestKeys(key string, candidates []string) []string {
	limit := min(len(key)/3, 3)
	if limit == 0 {
		return nil
	}
	best := limit + 1
	var out []string
	for _, c := range candidates {
		d := editDistance(strings.ToLower(key), c)
		switch {
		case d < best:
			best, out = d, []string{c}
		case d == best:
			out = append(out, c)
		}
	}
	if best > limit {
		return nil
	}
	return out
}

// editDistance is the Levenshtein distance between a and b (insertions,
// deletions and substitutions of bytes; keys are ASCII), with adjacent
// transpositions counting one (socket_gruop is one step from
// socket_group).
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// unknownKey is the error for key, not a field of the table t at path:
// "did you mean" the keys of that table close to it, else the tables
// where key is valid (a key written under the wrong header, such as root
// right after [delivery] instead of [delivery.maildir]).
func unknownKey(t reflect.Type, path, key string) error {
	if near := closestKeys(key, tableKeys(t)); len(near) > 0 {
		return fmt.Errorf("unknown key; did you mean %s?", strings.Join(near, " or "))
	}
	if where := tablesWithKey(key); len(where) > 0 {
		here := "the top level"
		if path != "" {
			here = "[" + genericPath(path) + "]"
		}
		return fmt.Errorf("unknown key in %s; %s is a key of %s", here, key, strings.Join(where, ", "))
	}
	return errors.New("unknown key")
}

// tablesWithKey lists, as headers ("[delivery.maildir]", "[[listener]]"),
// the tables of the configuration (or of a users file) where key is
// valid.
func tablesWithKey(key string) []string {
	var out []string
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type, path string, array bool)
	walk = func(t reflect.Type, path string, array bool) {
		if seen[t] {
			return
		}
		seen[t] = true
		defer delete(seen, t)
		if path != "" && slices.Contains(tableKeys(t), key) {
			h := "[" + path + "]"
			if array {
				h = "[" + h + "]"
			}
			if !slices.Contains(out, h) {
				out = append(out, h)
			}
		}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			ft, arr := f.Type, false
			if ft.Kind() == reflect.Slice {
				ft, arr = ft.Elem(), true
			}
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && !isValueType(ft) {
				walk(ft, joinKey(path, name), arr)
			}
		}
	}
	walk(reflect.TypeFor[config](), "", false)
	return out
}

// isValueType reports whether t decodes itself from one TOML value.
func isValueType(t reflect.Type) bool {
	return reflect.PointerTo(t).Implements(reflect.TypeFor[tomlValue]())
}

// genericPath strips the array indices of a key path:
// domain[0].user[1] is domain.user.
func genericPath(path string) string {
	return indexRE.ReplaceAllString(path, "")
}

var indexRE = regexp.MustCompile(`\[\d+\]`)

// fits reports, roughly, whether a TOML value v has the form a field of
// type t takes: a table for a struct, an array of tables for a slice of
// structs, an array of strings for a slice of strings, and so on. Types
// that decode themselves take a string or an integer and say more
// themselves.
func fits(t reflect.Type, v any) bool {
	if isValueType(t) {
		switch v.(type) {
		case string, int64:
			return true
		}
		return false
	}
	switch t.Kind() {
	case reflect.Pointer:
		return fits(t.Elem(), v)
	case reflect.Struct, reflect.Map:
		_, ok := v.(map[string]any)
		return ok
	case reflect.Slice:
		// Only arrays of tables against arrays of other values: a single
		// element of the wrong type is reported at its index.
		tables := t.Elem().Kind() == reflect.Struct && !isValueType(t.Elem())
		switch a := v.(type) {
		case []map[string]any:
			return tables
		case []any:
			allTables := len(a) > 0 && !slices.ContainsFunc(a, func(x any) bool { _, ok := x.(map[string]any); return !ok })
			return len(a) == 0 || tables == allTables
		}
		return false
	case reflect.String:
		_, ok := v.(string)
		return ok
	case reflect.Bool:
		_, ok := v.(bool)
		return ok
	case reflect.Int, reflect.Int64:
		_, ok := v.(int64)
		return ok
	}
	return true
}

// describeValue names the form of a TOML value for a message, more
// precisely than tomlTypeName for arrays.
func describeValue(v any) string {
	switch a := v.(type) {
	case []map[string]any:
		return "an array of tables"
	case []any:
		if len(a) > 0 && !slices.ContainsFunc(a, func(x any) bool { _, ok := x.(string); return !ok }) {
			return "an array of strings"
		}
		if len(a) > 0 && !slices.ContainsFunc(a, func(x any) bool { _, ok := x.(map[string]any); return !ok }) {
			return "an array of tables"
		}
	}
	return tomlTypeName(v)
}

// expectedForm says how the key at path (of type t) is written.
func expectedForm(path string, t reflect.Type) string {
	key := path[strings.LastIndexByte(path, '.')+1:]
	switch {
	case t.Kind() == reflect.Pointer:
		return expectedForm(path, t.Elem())
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct && !isValueType(t.Elem()):
		return fmt.Sprintf("[[%s]] tables (or %s = [{ ... }])", genericPath(path), key)
	case t.Kind() == reflect.Struct && !isValueType(t), t.Kind() == reflect.Map:
		return fmt.Sprintf("a table: [%s] or %s = { ... }", genericPath(path), key)
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		return fmt.Sprintf(`an array of strings: %s = ["...", "..."]`, key)
	case t.Kind() == reflect.Slice:
		return "an array"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Bool:
		return "a boolean (true or false)"
	case t.Kind() == reflect.Int, t.Kind() == reflect.Int64:
		return "an integer"
	}
	return t.String()
}

// formMismatch checks that the value v of field i of the table type t (at
// path) has the field's form. If not, the error says which form is
// expected and, when a neighbouring key of the table takes a value of
// this form (users for user), names it.
func formMismatch(t reflect.Type, i int, path string, v any) error {
	f := t.Field(i)
	if isValueType(f.Type) || fits(f.Type, v) {
		return nil
	}
	key, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	msg := fmt.Sprintf("expected %s, found %s", expectedForm(joinKey(path, key), f.Type), describeValue(v))
	var near []string
	others := slices.DeleteFunc(tableKeys(t), func(k string) bool { return k == key })
	for _, k := range closestKeys(key, others) {
		if j := fieldByKey(t, k); fits(t.Field(j).Type, v) {
			near = append(near, k)
		}
	}
	if len(near) > 0 {
		msg += fmt.Sprintf("; did you mean %s?", strings.Join(near, " or "))
	}
	return errors.New(msg)
}

// leadingZeroHint completes the parser's "cannot have leading zeroes"
// with what to write: TOML has no leading-zero octal, so socket_mode =
// 0660 is a syntax error, not the mode 0660.
func leadingZeroHint(pe toml.ParseError) string {
	if !strings.Contains(pe.Message, "leading zero") {
		return ""
	}
	key := pe.LastKey[strings.LastIndexByte(pe.LastKey, '.')+1:]
	digits := ""
	if m := regexp.MustCompile(`"(0\d+)"`).FindStringSubmatch(pe.Message); m != nil {
		digits = m[1]
	}
	if strings.HasSuffix(key, "mode") && digits != "" {
		return fmt.Sprintf(`: a mode is written as a string, %s = "%s" (or as a TOML octal integer, 0o%s)`, key, digits, strings.TrimLeft(digits, "0"))
	}
	return ": write the number without leading zeroes"
}
