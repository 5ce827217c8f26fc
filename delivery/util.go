package delivery

import (
	"errors"
	"io/fs"
	"maps"
	"slices"
)

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// sortedKeys returns m's keys in order, so that problems are reported in
// the same order every time.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
