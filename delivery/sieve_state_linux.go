package delivery

import (
	"io/fs"
	"syscall"
	"time"
)

// statIdentity returns the inode, device and change time (nanoseconds)
// of the file fi describes.
func statIdentity(fi fs.FileInfo) (ino, dev uint64, ctime int64, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, 0, false
	}
	return uint64(st.Ino), uint64(st.Dev), time.Unix(st.Ctim.Unix()).UnixNano(), true
}
