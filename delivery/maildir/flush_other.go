//go:build !linux

package maildir

import "sync"

// flushKey: without syncfs(2), every file is fsynced (FlushFsync).
func flushKey(FlushMode, File) (string, bool) { return "f", false }

func syncfsFile(f File) error { return f.Sync() }
func checkFile(File) error    { return nil }

// Without sync_file_range(2), FlushOrdered (and FlushAuto) is FlushFsync,
// said once per Store.
func orderedKey(kinds *sync.Map, _ File) (string, bool, string, bool) {
	_, known := kinds.LoadOrStore("all", true)
	return "f", false, "sync_file_range(2) is Linux only", !known
}
func orderedFile(f File) error { return f.Sync() }

// fsyncTogether is fsyncAfter: FlushOrdered is FlushFsync here.
func fsyncTogether(dir File, files []File, errs []error) error {
	return fsyncAfter(dir, files, errs)
}
