package protocol

import (
	"net"
	"sync/atomic"
	"time"
)

// readDeadlines is a connection's read-deadline bookkeeping: which
// deadline bounds the next network read, and when the socket's own read
// deadline has to move. The connection's reader (connReader) asks it
// before each read; the session switches its phases (command line,
// message text, end of the transfer). Its settings come from the Server
// once; the atomic fields may be changed from other goroutines (the
// delivery's end callback, interruptRead), the rest belongs to the
// connection's goroutine.
type readDeadlines struct {
	commandTimeout time.Duration // Server.CommandTimeout
	dataTimeout    time.Duration // Server.DataTimeout
	dataTotal      time.Duration // Server.DataTotalTimeout, 0 for none
	minRate        int           // Server.MinDataRate in octets per second, 0 for none
	minTimeout     time.Duration // the shorter of the command and data timeouts

	// timeout is the deadline applied to each network read, in
	// nanoseconds: the command timeout, or the data timeout inside DATA
	// and BDAT.
	timeout atomic.Int64
	// transferEnd, when not zero, is the end of the current message
	// transfer (DataTotalTimeout); lineEnd the end of the command line
	// being read (CommandTimeout for the whole line). Both are unix
	// nanoseconds, 0 for none, and bound every network read.
	transferEnd atomic.Int64
	lineEnd     atomic.Int64
	// While rateOn is set (message text, with MinDataRate), rateCredit is
	// the time, in nanoseconds, that reads may still spend waiting (see
	// spend).
	rateOn     atomic.Bool
	rateCredit atomic.Int64
	// dirty says someone else moved the socket's deadline (STARTTLS,
	// interruptRead): the next read sets it again.
	dirty  atomic.Bool
	socket time.Time // the socket's read deadline, as last set by arm
}

func (d *readDeadlines) init(s *Server) {
	d.commandTimeout = orDur(s.CommandTimeout, DefaultCommandTimeout)
	d.dataTimeout = orDur(s.DataTimeout, DefaultDataTimeout)
	if s.DataTotalTimeout >= 0 {
		d.dataTotal = orDur(s.DataTotalTimeout, DefaultDataTotalTimeout)
	}
	d.minRate = s.minDataRate()
	d.minTimeout = min(d.commandTimeout, d.dataTimeout)
	d.timeout.Store(int64(d.commandTimeout))
}

// readTimeout returns the current phase's timeout for one read.
func (d *readDeadlines) readTimeout() time.Duration { return time.Duration(d.timeout.Load()) }

// startLine bounds the command line about to be read as a whole: it must
// arrive within the phase's timeout from now. endLine lifts the bound.
func (d *readDeadlines) startLine() {
	d.lineEnd.Store(time.Now().Add(d.readTimeout()).UnixNano())
}

func (d *readDeadlines) endLine() { d.lineEnd.Store(0) }

// startData switches to the data timeout, starts the data rate's credit
// with its grace (one data timeout) and, unless a transfer is already
// running (BDAT spans several commands), its total limit.
func (d *readDeadlines) startData() {
	d.timeout.Store(int64(d.dataTimeout))
	if d.minRate > 0 {
		d.rateCredit.Store(int64(d.dataTimeout))
		d.rateOn.Store(true)
	}
	if d.dataTotal > 0 && d.transferEnd.Load() == 0 {
		// The reader brings the socket's deadline closer if this end
		// comes first.
		d.transferEnd.Store(time.Now().Add(d.dataTotal).UnixNano())
	}
}

// endData restores the command timeout. The total transfer limit stays
// until endTransfer or endTransaction.
func (d *readDeadlines) endData() {
	d.timeout.Store(int64(d.commandTimeout))
	d.rateOn.Store(false)
}

// endTransfer lifts the transfer's limits once the whole message is in:
// the disconnect watcher reads on while the backend delivers.
func (d *readDeadlines) endTransfer() {
	d.transferEnd.Store(0)
	d.rateOn.Store(false)
}

// endTransaction lifts the total transfer limit.
func (d *readDeadlines) endTransaction() { d.transferEnd.Store(0) }

// hard returns the earlier of the transfer's and the command line's
// deadlines, or 0 for none.
func (d *readDeadlines) hard() int64 {
	t, l := d.transferEnd.Load(), d.lineEnd.Load()
	if l != 0 && (t == 0 || l < t) {
		return l
	}
	return t
}

// creditEnd returns the time, in unix nanoseconds, at which a read that
// starts at start runs out of the data rate's credit, or 0 when the rate
// does not apply.
func (d *readDeadlines) creditEnd(start time.Time) int64 {
	if !d.rateOn.Load() {
		return 0
	}
	return start.UnixNano() + d.rateCredit.Load()
}

// spend accounts one read of message text that waited waited and brought
// n octets: the credit shrinks by the wait and grows by the time n octets
// buy at MinDataRate, up to DataTimeout. A transfer starts with
// DataTimeout of credit (the grace) and reads may not wait past it, so a
// client must keep up the minimum rate over any stretch longer than the
// data timeout, however steadily it trickles. Only time spent waiting in
// reads counts, as with Postfix's smtpd_min_data_rate: a backend that is
// slow to read the body does not use up the client's credit.
func (d *readDeadlines) spend(waited time.Duration, n int) {
	credit := d.rateCredit.Load() - int64(waited) + int64(n)*int64(time.Second)/int64(d.minRate)
	if limit := int64(d.dataTimeout); credit > limit {
		credit = limit
	}
	d.rateCredit.Store(credit)
}

// needsArm reports whether the socket's deadline must move for a read
// whose own deadline is want under the phase's timeout: when it would
// fire more than an eighth of the timeout too late, or when someone else
// moved it. One that fires too early is extended when it fires. It is set
// no further ahead than the shorter of the command and data timeouts, so
// that entering DATA does not have to bring it closer. A read so times out
// no earlier than its timeout and at most an eighth after it, and most
// reads, phase switches included, make no deadline call.
func (d *readDeadlines) needsArm(want time.Time, timeout time.Duration) bool {
	return d.dirty.Swap(false) || d.socket.IsZero() || d.socket.Sub(want) > timeout/8
}

// arm sets nc's read deadline to want, or to now plus the shorter phase
// timeout if that comes first.
func (d *readDeadlines) arm(nc net.Conn, now, want time.Time) {
	if t := now.Add(d.minTimeout); t.Before(want) {
		want = t
	}
	nc.SetReadDeadline(want)
	d.socket = want
}

// markDirty records that the socket's deadline was moved by someone else.
func (d *readDeadlines) markDirty() { d.dirty.Store(true) }
