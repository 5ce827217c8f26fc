package main

import "golang.org/x/sys/unix"

// readOnlyFS reports whether path is on a file system mounted read-only.
// NetBSD has statvfs(2) in place of statfs; its ST_RDONLY is MNT_RDONLY.
func readOnlyFS(path string) bool {
	var st unix.Statvfs_t
	return unix.Statvfs(path, &st) == nil && st.Flag&unix.MNT_RDONLY != 0
}
