//go:build !linux

package maildir

import "io/fs"

// Without openat2(2), RootFS works through an os.Root.

func (r *RootFS) closeAt() error { return nil }

func (r *RootFS) openFileFast(string, int, fs.FileMode) (File, bool, error) { return nil, false, nil }
func (r *RootFS) mkdirFast(string, fs.FileMode) (bool, error)               { return false, nil }
func (r *RootFS) renameFast(string, string) (bool, error)                   { return false, nil }
func (r *RootFS) linkFast(string, string) (bool, error)                     { return false, nil }
func (r *RootFS) removeFast(string) (bool, error)                           { return false, nil }
func (r *RootFS) statFast(string) (fs.FileInfo, bool, error)                { return nil, false, nil }
func (r *RootFS) readDirFast(string) ([]fs.DirEntry, bool, error)           { return nil, false, nil }
