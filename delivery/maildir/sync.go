package maildir

import "sync"

// syncer gives group commit for directory fsyncs: concurrent callers that
// need the same directory synced share one fsync(2). A caller is covered
// only by an fsync that started after the caller asked (so after its
// rename), and is not answered before that fsync returned.
type syncer struct {
	mu   sync.Mutex
	dirs map[string]*dirSync
}

// dirSync is the state of one directory. refs counts callers inside
// syncer.sync, so the entry can be dropped when idle.
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

// sync calls do (an fsync of dir) or waits for a call that started after
// this one was made, and returns its error.
func (s *syncer) sync(dir string, do func() error) error {
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
