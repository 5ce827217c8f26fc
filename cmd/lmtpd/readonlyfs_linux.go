package main

import "golang.org/x/sys/unix"

// readOnlyFS reports whether path is on a file system mounted read-only
// (ST_RDONLY in statfs(2)'s f_flags).
func readOnlyFS(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Flags&unix.ST_RDONLY != 0
}
