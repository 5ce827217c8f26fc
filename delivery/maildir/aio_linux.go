package maildir

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Linux native AIO (io_setup(2), io_submit(2), io_getevents(2)), used for
// one thing: to fsync a directory and files together, in that order,
// without a thread of ours for each (see orderedBarrier). The kernel
// (4.18 and later) runs each IOCB_CMD_FSYNC as a work item of the
// submitting CPU's workqueue, in submission order; a work item that
// sleeps lets the next one start. So the directory's fsync starts the
// journal commit and sleeps waiting for it, and the files' fsyncs start
// microseconds later, while that commit is still being written, and wait
// for it instead of each issuing a cache flush after it.

// iocbCmdFsync is IOCB_CMD_FSYNC of linux/aio_abi.h.
const iocbCmdFsync = 2

// aioSlots is the number of requests one context holds in flight; a run
// with more files submits them as slots come free.
const aioSlots = 128

// iocb is struct iocb of linux/aio_abi.h, 64 bytes on every architecture.
// aio_key and aio_rw_flags trade places on big-endian machines; both are
// zero here, so one layout serves.
type iocb struct {
	data   uint64 // aio_data: the request's index, given back in its ioEvent
	_      uint32 // aio_key
	_      int32  // aio_rw_flags
	opcode uint16 // aio_lio_opcode
	_      int16  // aio_reqprio
	fildes uint32 // aio_fildes
	_      uint64 // aio_buf
	_      uint64 // aio_nbytes
	_      int64  // aio_offset
	_      uint64 // aio_reserved2
	_      uint32 // aio_flags
	_      uint32 // aio_resfd
}

// ioEvent is struct io_event.
type ioEvent struct {
	data uint64
	obj  uint64
	res  int64
	res2 int64
}

// aioBroken is set once io_setup or an fsync submission was refused for
// good (a kernel before 4.18, a seccomp filter): the caller's fallback is
// used from then on, without asking again. A refusal for now (EAGAIN,
// aio-max-nr reached) uses the fallback once.
var aioBroken atomic.Bool

// aioWhy is what refused it for good, for the log (aioRefused).
var aioWhy atomic.Pointer[string]

// refuseAIO records that AIO cannot be used here, and why.
func refuseAIO(why string) {
	aioWhy.CompareAndSwap(nil, &why)
	aioBroken.Store(true)
}

// aioRefused says why AIO was refused for good, "" while it is not.
func aioRefused() string {
	if why := aioWhy.Load(); why != nil {
		return *why
	}
	return ""
}

// aioPool keeps idle contexts: one per barrier running at a time, so
// contexts are not set up and torn down for every burst of deliveries.
var aioPool struct {
	mu   sync.Mutex
	idle []uintptr
}

// aioGet returns a context, or false when AIO cannot be used.
func aioGet() (uintptr, bool) {
	if aioBroken.Load() {
		return 0, false
	}
	aioPool.mu.Lock()
	if n := len(aioPool.idle); n > 0 {
		ctx := aioPool.idle[n-1]
		aioPool.idle = aioPool.idle[:n-1]
		aioPool.mu.Unlock()
		return ctx, true
	}
	aioPool.mu.Unlock()
	var ctx uintptr
	if _, _, e := unix.Syscall(unix.SYS_IO_SETUP, aioSlots, uintptr(unsafe.Pointer(&ctx)), 0); e != 0 {
		// EAGAIN: aio-max-nr is reached for now (other processes'
		// contexts); ask again next time. Anything else will not change.
		if e != unix.EAGAIN {
			refuseAIO("io_setup: " + e.Error())
		}
		return 0, false
	}
	return ctx, true
}

// aioPut returns a context to the pool; the pool keeps a few.
func aioPut(ctx uintptr) {
	aioPool.mu.Lock()
	if len(aioPool.idle) < 4 {
		aioPool.idle = append(aioPool.idle, ctx)
		ctx = 0
	}
	aioPool.mu.Unlock()
	if ctx != 0 {
		unix.Syscall(unix.SYS_IO_DESTROY, ctx, 0, 0)
	}
}

// errAIORefused: the kernel refused the first submission; nothing ran.
var errAIORefused = errors.New("maildir: asynchronous fsync refused")

// aioFsync fsyncs every descriptor in fds, submitted in order, and
// returns each one's result in errs (len(fds)). It returns
// errAIORefused, with nothing done, if AIO cannot be used; the caller
// then fsyncs itself. Any other failure is a result in errs: a request
// whose completion could not be collected counts as failed.
func aioFsync(fds []int, errs []error) error {
	ctx, ok := aioGet()
	if !ok {
		return errAIORefused
	}
	cbs := make([]iocb, len(fds))
	ptrs := make([]*iocb, len(fds))
	for i, fd := range fds {
		cbs[i] = iocb{data: uint64(i), opcode: iocbCmdFsync, fildes: uint32(fd)}
		ptrs[i] = &cbs[i]
	}
	// At most this many are in flight (a run is usually a directory and
	// a few files): no larger buffer to allocate per run.
	events := make([]ioEvent, min(aioSlots, len(fds)))
	next, inflight, sent := 0, 0, 0
	var lost error // io_getevents failed: the context can no longer be trusted
	for next < len(fds) || inflight > 0 {
		if n := min(len(fds)-next, aioSlots-inflight); n > 0 {
			r, _, e := unix.Syscall(unix.SYS_IO_SUBMIT, ctx, uintptr(n), uintptr(unsafe.Pointer(&ptrs[next])))
			switch {
			case e == 0:
				next += int(r)
				inflight += int(r)
				sent += int(r)
			case e == unix.EINTR || (e == unix.EAGAIN && inflight > 0):
				// Try again, after collecting what is in flight.
			case e == unix.EBADF:
				// This one's descriptor: its own result.
				errs[next] = e
				cbs[next].opcode = 0 // answered
				next++
			case sent == 0:
				// Nothing submitted: the caller does it all. No AIO
				// fsync on this system (EINVAL before Linux 4.18, a
				// seccomp filter's EPERM or ENOSYS), or for now
				// (EAGAIN: aio-max-nr reached).
				if e != unix.EAGAIN {
					refuseAIO("io_submit of an fsync: " + e.Error())
				}
				aioPut(ctx)
				return errAIORefused
			default:
				// Some were submitted: these are not. Fsync them here.
				for i := next; i < len(fds); i++ {
					_, errs[i] = retryEINTR(func() (int, error) { return 0, unix.Fsync(fds[i]) })
				}
				next = len(fds)
			}
		}
		if inflight == 0 {
			continue
		}
		r, _, e := unix.Syscall6(unix.SYS_IO_GETEVENTS, ctx, 1, uintptr(inflight), uintptr(unsafe.Pointer(&events[0])), 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			// The results cannot be known: every request not yet
			// answered counts as failed, and the context is dropped.
			lost = e
			break
		}
		for _, ev := range events[:r] {
			if ev.res < 0 {
				errs[ev.data] = unix.Errno(-ev.res)
			} else {
				errs[ev.data] = nil
			}
			cbs[ev.data].opcode = 0 // answered
		}
		inflight -= int(r)
	}
	runtime.KeepAlive(cbs)
	runtime.KeepAlive(ptrs)
	if lost != nil {
		for i := range next {
			if cbs[i].opcode != 0 {
				errs[i] = lost
			}
		}
		// Requests may still be in flight on it: leave it to the
		// kernel (io_destroy waits for them) rather than reuse it.
		go unix.Syscall(unix.SYS_IO_DESTROY, ctx, 0, 0)
		return nil
	}
	aioPut(ctx)
	return nil
}
