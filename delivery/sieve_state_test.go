package delivery

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestStateTrackerSeenCache checks that Seen through a markCache answers
// as a plain read of the state file does, whatever happens to the file
// between two lookups: marked anew (renamed over), rewritten in place,
// damaged, removed; and that a lookup of an unchanged file is answered
// from the cache.
func TestStateTrackerSeenCache(t *testing.T) {
	dir := t.TempDir()
	clock := time.Unix(1_700_000_000, 0)
	now := func() time.Time { return clock }
	var marks markCache
	cached := newStateTracker(dir, "example.org", "bob", now)
	cached.marks = &marks
	plain := newStateTracker(dir, "example.org", "bob", now)
	ctx := context.Background()
	const key = "vacation\x00h\x00alice@example.net"
	path := filepath.Join(dir, filepath.FromSlash(cached.file(key)))

	check := func(step string, period time.Duration, want bool) {
		t.Helper()
		got, err := cached.Seen(ctx, key, period)
		if err != nil {
			t.Fatalf("%s: cached Seen: %v", step, err)
		}
		ref, err := plain.Seen(ctx, key, period)
		if err != nil {
			t.Fatalf("%s: plain Seen: %v", step, err)
		}
		if got != want || ref != want {
			t.Fatalf("%s: Seen = %v (cached), %v (plain), want %v", step, got, ref, want)
		}
	}

	check("missing", time.Hour, false)
	if err := cached.Mark(key, time.Hour, true); err != nil {
		t.Fatal(err)
	}
	check("marked", time.Hour, true)
	marks.mu.Lock()
	_, inCache := marks.m[path]
	marks.mu.Unlock()
	if !inCache {
		t.Fatalf("Seen of a marked file left no cache entry for %s", path)
	}
	// An entry whose stamp matches answers without reading: make the
	// entry say something else for the same stamp and see it answer.
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	marks.put(path, fi, clock.Add(-48*time.Hour), true)
	if seen, _ := cached.Seen(ctx, key, time.Hour); seen {
		t.Fatal("Seen of an unchanged file did not answer from the cache")
	}
	marks.put(path, fi, clock, true) // back to the truth
	check("cached", time.Hour, true)

	clock = clock.Add(2 * time.Hour)
	check("period over", time.Hour, false)
	check("longer period", 3*time.Hour, true)

	clock = clock.Add(time.Minute)
	if err := cached.Mark(key, time.Hour, true); err != nil { // renamed over: a new inode
		t.Fatal(err)
	}
	check("marked again", time.Hour, true)

	if err := os.WriteFile(path, []byte("not a time, longer than one\n"), 0o600); err != nil { // in place
		t.Fatal(err)
	}
	check("damaged in place", time.Hour, false)

	if err := os.WriteFile(path, []byte(strconv.FormatInt(clock.Unix(), 10)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check("repaired in place", time.Hour, true)

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	check("removed", 100*365*24*time.Hour, false)
}

// TestStateTrackerPrunes: a user's state directory does not grow without
// bound. Every redirected message leaves a mark (redirectMemory), every
// message a duplicate test saw one, each in a file of its own; a mark
// older than stateMaxAge answers no Seen, and Mark removes such files (and
// temporary files a crash left) once a day. Younger marks stay.
func TestStateTrackerPrunes(t *testing.T) {
	dir := t.TempDir()
	start := time.Unix(1_700_000_000, 0)
	clock := start
	tr := newStateTracker(dir, "example.org", "bob", func() time.Time { return clock })
	ctx := context.Background()
	for i := range 5 {
		if err := tr.Mark("old"+strconv.Itoa(i), time.Hour, true); err != nil {
			t.Fatal(err)
		}
	}
	userDir := filepath.Join(dir, filepath.FromSlash(tr.user))
	crashed := filepath.Join(userDir, "leftover.tmp123")
	if err := os.WriteFile(crashed, []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := start.Add(-48 * time.Hour)
	if err := os.Chtimes(crashed, old, old); err != nil {
		t.Fatal(err)
	}
	clock = start.Add(stateMaxAge - 10*24*time.Hour)
	if err := tr.Mark("young", 60*24*time.Hour, true); err != nil {
		t.Fatal(err)
	}
	clock = start.Add(stateMaxAge + 24*time.Hour)
	if err := tr.Mark("new", time.Hour, true); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(tr.file("old"+strconv.Itoa(i))))); !os.IsNotExist(err) {
			t.Errorf("mark old%d, older than %v, still there (%v)", i, stateMaxAge, err)
		}
	}
	if _, err := os.Stat(crashed); !os.IsNotExist(err) {
		t.Errorf("a temporary file a crash left is still there (%v)", err)
	}
	for _, k := range []string{"young", "new"} {
		if seen, err := tr.Seen(ctx, k, 60*24*time.Hour); err != nil || !seen {
			t.Errorf("mark %s: Seen %v, %v; want it kept", k, seen, err)
		}
	}
	// The next day's Mark does not scan again.
	for i := range 3 {
		if err := tr.Mark("more"+strconv.Itoa(i), time.Hour, true); err != nil {
			t.Fatal(err)
		}
	}
	ents, err := os.ReadDir(userDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 2+3+1 { // young, new, more0-2, the prune marker
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("state directory holds %v", names)
	}
}
