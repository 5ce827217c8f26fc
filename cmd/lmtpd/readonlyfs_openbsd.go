package main

import "golang.org/x/sys/unix"

// readOnlyFS reports whether path is on a file system mounted read-only
// (MNT_RDONLY in statfs(2)'s f_flags, which OpenBSD's Statfs_t calls
// F_flags).
func readOnlyFS(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.F_flags&unix.MNT_RDONLY != 0
}
