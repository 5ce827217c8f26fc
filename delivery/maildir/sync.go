package maildir

import "sync"

// GroupSync gives group commit for fsyncs: concurrent callers that need
// the same thing synced (a directory here, the dedup journal in package
// delivery) share one fsync(2). A caller is covered only by an fsync that
// started after the caller asked (so after its rename or write), and is
// not answered before that fsync returned. The zero value is ready to
// use; safe for concurrent use.
type GroupSync struct {
	mu   sync.Mutex
	dirs map[string]*dirSync
}

// dirSync is the state of one directory. refs counts callers inside
// GroupSync.Sync, so the entry can be dropped when idle.
type dirSync struct {
	refs    int
	started uint64   // number of fsyncs started
	cur     *syncRun // the fsync in progress, or nil
}

type syncRun struct {
	n    uint64
	done chan struct{}
	err  error
}

// Sync calls do (an fsync of what dir names; any key works) or waits for
// a call for the same key that started after this one was made, and
// returns its error. Callers with the same key must pass equivalent do
// functions: only one of them runs.
func (s *GroupSync) Sync(dir string, do func() error) error {
	s.mu.Lock()
	if s.dirs == nil {
		s.dirs = make(map[string]*dirSync)
	}
	d := s.dirs[dir]
	if d == nil {
		d = &dirSync{}
		s.dirs[dir] = d
	}
	d.refs++
	need := d.started + 1 // any fsync numbered need or later covers us
	var err error
	for {
		if r := d.cur; r != nil {
			s.mu.Unlock()
			<-r.done
			s.mu.Lock()
			if r.n >= need {
				err = r.err
				break
			}
			continue
		}
		d.started++
		r := &syncRun{n: d.started, done: make(chan struct{})}
		d.cur = r
		s.mu.Unlock()
		r.err = do()
		s.mu.Lock()
		d.cur = nil
		close(r.done)
		err = r.err
		break
	}
	d.refs--
	if d.refs == 0 {
		delete(s.dirs, dir)
	}
	s.mu.Unlock()
	return err
}
