package maildir

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Flags and keywords (Sieve imap4flags, RFC 5232) are written the way
// Dovecot reads them: a message with flags is committed into cur/ with the
// maildir info ":2," and its flag letters in ASCII order (D draft, F
// flagged, R replied, S seen, T trashed); a keyword is a lower-case letter
// a to z whose meaning is line "N name" of the folder's dovecot-keywords
// file (letter a is 0). A keyword that finds no free letter (26 in use) is
// dropped and the message is still delivered.

// KeywordsFile is Dovecot's keyword list in a maildir (or folder).
const KeywordsFile = "dovecot-keywords"

// maxKeywords is how many keywords one maildir can name by letter.
const maxKeywords = 26

// SystemFlagLetter returns the maildir info letter of an IMAP system flag
// (case-insensitive), or 0 for a keyword or \Recent (which no file
// carries).
func SystemFlagLetter(flag string) byte {
	switch strings.ToLower(flag) {
	case `\seen`:
		return 'S'
	case `\answered`:
		return 'R'
	case `\flagged`:
		return 'F'
	case `\deleted`:
		return 'T'
	case `\draft`:
		return 'D'
	}
	return 0
}

// validKeyword reports whether k can be an IMAP keyword (an atom, RFC 3501
// section 9: no specials, no spaces or controls) that Dovecot will read
// back from dovecot-keywords.
func validKeyword(k string) bool {
	if k == "" || len(k) > 128 || strings.HasPrefix(k, `\`) {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

// keywordLocks serialises updates of one dovecot-keywords file by this
// process; the file itself is replaced atomically (write, fsync, rename).
var keywordLocks sync.Map // dir -> *sync.Mutex

// info returns the maildir info of flags for a message in dir: the system
// flag letters and the letters of the keywords, adding keywords that dir's
// dovecot-keywords does not list yet. "" means no flags (the message goes
// to new/).
func (s *Store) info(ctx context.Context, l loc, dir string, flags []string) (string, error) {
	if len(flags) == 0 {
		return "", nil
	}
	letters := map[byte]bool{}
	var kws []string
	for _, f := range flags {
		if l := SystemFlagLetter(f); l != 0 {
			letters[l] = true
		} else if validKeyword(f) {
			kws = append(kws, f)
		}
	}
	if len(kws) > 0 {
		mu, _ := keywordLocks.LoadOrStore(l.key(dir), &sync.Mutex{})
		mu.(*sync.Mutex).Lock()
		idx, err := s.keywordIndexes(l, dir, kws)
		mu.(*sync.Mutex).Unlock()
		if err != nil {
			return "", err
		}
		for _, i := range idx {
			letters['a'+byte(i)] = true
		}
	}
	if len(letters) == 0 {
		return "", nil
	}
	out := make([]byte, 0, len(letters))
	for l := range letters {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return string(out), nil
}

// keywordIndexes returns the index of each keyword in dir's
// dovecot-keywords, adding the missing ones (matched case-insensitively,
// as IMAP keywords are); keywords beyond the 26 letters are left out.
func (s *Store) keywordIndexes(l loc, dir string, kws []string) ([]int, error) {
	names, err := s.readKeywords(l, dir)
	if err != nil {
		return nil, err
	}
	var out []int
	changed := false
	for _, k := range kws {
		i := slicesIndexFold(names, k)
		if i < 0 {
			i = firstFree(names)
			if i < 0 {
				continue
			}
			for len(names) <= i {
				names = append(names, "")
			}
			names[i] = k
			changed = true
		}
		out = append(out, i)
	}
	if changed {
		if err := s.writeKeywords(l, dir, names); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func slicesIndexFold(names []string, k string) int {
	for i, n := range names {
		if n != "" && strings.EqualFold(n, k) {
			return i
		}
	}
	return -1
}

func firstFree(names []string) int {
	for i := 0; i < maxKeywords; i++ {
		if i >= len(names) || names[i] == "" {
			return i
		}
	}
	return -1
}

// readKeywords reads dir's dovecot-keywords: names by index, "" for a
// free index. A missing file is an empty list; lines that do not parse are
// skipped, as Dovecot does.
func (s *Store) readKeywords(l loc, dir string) ([]string, error) {
	f, err := l.fs.OpenFile(dir+"/"+KeywordsFile, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, ok := f.(io.Reader)
	if !ok {
		return nil, fmt.Errorf("maildir: the file system cannot read %s", KeywordsFile)
	}
	var names []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		num, name, ok := strings.Cut(sc.Text(), " ")
		i, err := strconv.Atoi(num)
		if !ok || err != nil || i < 0 || i >= maxKeywords || name == "" {
			continue
		}
		for len(names) <= i {
			names = append(names, "")
		}
		names[i] = name
	}
	return names, sc.Err()
}

// writeKeywords replaces dir's dovecot-keywords durably.
func (s *Store) writeKeywords(l loc, dir string, names []string) error {
	var b strings.Builder
	for i, n := range names {
		if n != "" {
			fmt.Fprintf(&b, "%d %s\n", i, n)
		}
	}
	tmp := dir + "/tmp/" + s.names.Next(s.now()) + ".keywords"
	f, err := l.fs.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, l.fileMode)
	if err != nil {
		return err
	}
	err = s.own(f, l, tmp, l.fileMode) // Dovecot, as the user, reads and updates it
	if err == nil {
		_, err = io.WriteString(f, b.String())
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = l.fs.Rename(tmp, dir+"/"+KeywordsFile)
	}
	if err != nil {
		l.fs.Remove(tmp)
		return err
	}
	return fsyncDir(l.fs, dir)
}
