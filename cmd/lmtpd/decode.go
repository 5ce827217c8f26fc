package main

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// tomlValue is implemented by configuration types that decode themselves
// from a TOML value (durations, sizes, file modes).
type tomlValue interface {
	decodeTOML(v any) error
}

// defaulter is implemented by configuration types whose new elements (in
// an array of tables, or a table behind a pointer) start from defaults.
type defaulter interface {
	setDefaults()
}

// decodeStrict parses text as TOML and decodes it into dst (a pointer to
// a struct whose fields carry `toml` tags), over the values dst already
// holds. It is strict: an unknown key, a value of the wrong type and a
// value a field's own decoder refuses are errors naming the line and the
// key, and all of them are reported, not only the first.
//
// BurntSushi/toml parses; decoding is done here from its generic tree
// because its own decoder reports one position per key name (wrong for
// the second element of an array of tables) and stops at the first error.
func decodeStrict(file, text string, dst any) error {
	var tree map[string]any
	if _, err := toml.Decode(text, &tree); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			// The parser's line counter has passed a newline it reports
			// as the offending character ("got '\n'"); the byte offset
			// gives the line the mistake is on.
			line := pe.Position.Line
			if st := pe.Position.Start; st >= 0 && st <= len(text) {
				line = 1 + strings.Count(text[:st], "\n")
			}
			return configErrors{{File: file, Line: line, Key: pe.LastKey, Err: errors.New(pe.Message + leadingZeroHint(pe))}}
		}
		return configErrors{{File: file, Err: err}}
	}
	c := &errorCollector{file: file, loc: newLocator(text)}
	decodeValue(c, "", tree, reflect.ValueOf(dst).Elem())
	return c.err()
}

// tomlTypeName describes a decoded TOML value for an error message.
func tomlTypeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date or time"
	}
	return fmt.Sprintf("a %T", v)
}

// fieldByKey returns the struct field tagged key, or -1.
func fieldByKey(t reflect.Type, key string) int {
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if name == key && name != "-" {
			return i
		}
	}
	return -1
}

// decodeValue decodes v into rv, recording problems under path.
func decodeValue(c *errorCollector, path string, v any, rv reflect.Value) {
	if rv.CanAddr() {
		if tv, ok := rv.Addr().Interface().(tomlValue); ok {
			if err := tv.decodeTOML(v); err != nil {
				c.add(path, err)
			}
			return
		}
	}
	wrongType := func(want string) {
		c.addf(path, "expected %s, found %s", want, tomlTypeName(v))
	}
	switch rv.Kind() {
	case reflect.Pointer:
		if rv.IsNil() {
			p := reflect.New(rv.Type().Elem())
			if d, ok := p.Interface().(defaulter); ok {
				d.setDefaults()
			}
			rv.Set(p)
		}
		decodeValue(c, path, v, rv.Elem())
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			wrongType("a table")
			return
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			i := fieldByKey(rv.Type(), k)
			if i < 0 {
				c.add(joinKey(path, k), unknownKey(rv.Type(), path, k))
				continue
			}
			if err := formMismatch(rv.Type(), i, path, m[k]); err != nil {
				c.add(joinKey(path, k), err)
				continue
			}
			decodeValue(c, joinKey(path, k), m[k], rv.Field(i))
		}
	case reflect.Slice:
		var items []any
		switch a := v.(type) {
		case []any:
			items = a
		case []map[string]any:
			for _, m := range a {
				items = append(items, m)
			}
		default:
			if rv.Type().Elem().Kind() == reflect.String {
				wrongType(`an array of strings such as ["...", "..."]`)
			} else {
				wrongType("an array")
			}
			return
		}
		s := reflect.MakeSlice(rv.Type(), len(items), len(items))
		for i, item := range items {
			e := s.Index(i)
			if d, ok := e.Addr().Interface().(defaulter); ok {
				d.setDefaults()
			}
			decodeValue(c, indexKey(path, i), item, e)
		}
		rv.Set(s)
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			wrongType("a table")
			return
		}
		out := reflect.MakeMapWithSize(rv.Type(), len(m))
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			e := reflect.New(rv.Type().Elem()).Elem()
			decodeValue(c, joinKey(path, k), m[k], e)
			out.SetMapIndex(reflect.ValueOf(k), e)
		}
		rv.Set(out)
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			wrongType("a string")
			return
		}
		rv.SetString(s)
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			wrongType("a boolean (true or false)")
			return
		}
		rv.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, ok := v.(int64)
		if !ok {
			wrongType("an integer")
			return
		}
		if rv.Kind() == reflect.Int && (n > math.MaxInt32 || n < math.MinInt32) {
			c.addf(path, "%d is out of range", n)
			return
		}
		rv.SetInt(n)
	default:
		panic(fmt.Sprintf("decodeValue: unsupported field kind %s at %s", rv.Kind(), path))
	}
}
