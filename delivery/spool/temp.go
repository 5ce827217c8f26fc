package spool

import "os"

// createUnlinked creates a uniquely named file in dir and removes its name
// at once, so the space is freed when the file is closed or the process
// dies.
func createUnlinked(dir string) (*os.File, error) {
	f, err := os.CreateTemp(dir, ".lmtpd-spool-*")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
