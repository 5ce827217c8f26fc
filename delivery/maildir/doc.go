// Package maildir delivers messages into maildirs (the maildir(5) format of
// qmail, with the Maildir++ folders of Courier and Dovecot) under one root
// directory or a system user's home, durably and without ever touching
// anything outside the root or the home.
//
// # Write path
//
// A delivery creates a file in tmp/ and writes it (Stage); Commit then
// makes it durable, gives it its name in new/ and makes that name
// durable; only then does it report success. So a success (lmtpd's 250)
// means the file's data and its entry in new/ are on the disk, and
// nothing incomplete is ever visible in new/: the data barrier precedes
// every name in new/. The file in tmp/ is one of two kinds:
//
//   - Unnamed, where the file system allows (Linux: O_TMPFILE on ext4,
//     XFS, Btrfs, tmpfs and others): open(2) with O_TMPFILE|O_RDWR (never
//     O_EXCL, which forbids the link) in the maildir's tmp/, resolved
//     below the root or the home as every other path is; owner, mode
//     and content as below. Commit links the descriptor into
//     new/<name> (linkat(2) with AT_EMPTY_PATH, which needs
//     CAP_DAC_READ_SEARCH, or else of /proc/self/fd/N with
//     AT_SYMLINK_FOLLOW), and each further recipient's copy on the same
//     file system is the same descriptor linked into that recipient's
//     new/. No name in tmp/ at any time, no rename, nothing to remove on
//     failure (closing the descriptor frees the inode), and a crash
//     leaves no litter: an unlinked inode is on the file system's orphan
//     list and freed at the next mount. A name taken in new/ (linkat
//     answers EEXIST; rename would replace it) is retried with the next
//     unique names. Whether a file system has O_TMPFILE is learnt at its
//     first use (EOPNOTSUPP, EISDIR or EINVAL from the open) and
//     remembered per device.
//   - Named: a unique name in tmp/ created with O_EXCL, renamed into new/
//     by Commit. Used on other systems, on file systems without
//     O_TMPFILE, where openat2(2) is missing (the os.Root way), and for a
//     file staged past maxOpenStaged, which is fsynced and closed at
//     once and so needs a name to be found again.
//
// Why the unnamed way is as durable as the rename: the data barrier
// (fsync(2) of the descriptor, or syncfs(2), or the ordered mode's
// sync_file_range(2)) is the same and precedes the linkat as it preceded
// the rename. fsync of a file writes its data and the inode that maps
// it (size, block allocation) and waits for both, whether or not any
// name points to it: a name is exactly what it never covered, since the
// named way never fsyncs tmp/ either. The name comes from the link,
// which is an entry in new/ like the rename's, and new/ is fsynced after
// it by the rename barrier, unchanged: that makes the entry durable, and
// with it the inode's link count and its removal from the orphan list,
// which the journaling file systems log in the same transaction as the
// entry. A crash before that fsync loses only the name (the inode is an
// orphan, freed at mount), never shows a name without its data. The
// ordered mode's argument below holds with linkat in place of rename:
// the link joins a journal transaction no earlier than the one holding
// the data's allocation.
//
// Staged.Path of an unnamed file is "" until Commit: no caller reads a
// staged file by its name (lmtpd logs the path once committed; Sieve
// and the deliver command go through Stage and Commit). The rename barriers (and with syncfs the data
// barriers too) are shared by concurrent deliveries (group commit), with
// no timer: a barrier covers every delivery that asked for one before it
// started, the deliveries that arrive while it runs share the next one,
// and a lone delivery runs its own at once. How a barrier flushes is
// Options.Flush (FlushMode):
//
//   - FlushAuto, the default: FlushOrdered on a file system where it is
//     safe (below), FlushFsync elsewhere, said once per file system in
//     the log at its first delivery. Either way the file and each new/
//     it went to are fsynced, successfully, before the success.
//   - FlushFsync: each Commit fsyncs its own files (in
//     parallel when there are several) without waiting for other
//     deliveries' barriers: the kernel already folds overlapping fsyncs
//     into one journal commit, and a user-space batch across deliveries
//     added a barrier's latency (measured: 0.79× against 0.94× go-smtp's
//     messages per second at 8 connections). Then each new/ is fsynced
//     after the renames, once for all concurrent commits into it.
//   - FlushSyncfs: one syncfs(2) of the file system for all the
//     deliveries waiting, data and renames alike, so the barrier that
//     follows one group's renames is also the next group's data barrier,
//     and renames into many new/ directories cost one barrier. Each
//     file's own write-back errors are checked after it
//     (sync_file_range(2), which does no I/O then), since syncfs reports
//     only errors after its own descriptor was opened. Used on ext4, XFS,
//     Btrfs and tmpfs with Linux 5.17 or later (before that, syncfs did not
//     report all errors: 5.8 added write-back errors, 5.17 the file
//     system's own, journal commits' included), FlushFsync elsewhere. Fewer journal commits per
//     message with several recipients; but a syncfs takes longer than an
//     fsync, so fewer single-recipient messages per second, and it also
//     flushes other programs' data on the same file system.
//   - FlushOrdered, on ext4 alone (below): the same fsyncs as FlushFsync,
//     the file's last, in an order that lets one journal commit carry a
//     group's data and names instead of two.
//
// A failed delivery removes its tmp/ file (an unnamed one is closed) and
// leaves nothing in new/. A named file is held open from Stage to its
// data barrier, an unnamed one until its last link is made (with syncfs, to the
// end of Commit: its descriptor is the one the rename barrier syncs, so
// no directory is opened for it; with ordered, to its own fsync at the
// end of Commit); past 1024 files held open by the Store
// (maxOpenStaged: one transaction may stage one per recipient), a file is
// fsynced and closed as it is staged instead. Staging and
// committing are separate steps, so a caller can stage a message for
// every recipient and commit only when all succeeded. Further recipients
// of identical bytes get hard links of the first file, as Dovecot does
// (staged in their tmp/, or, for an unnamed file, made only at Commit,
// straight into their new/, where their maildir is on the same file
// system: else a copy); a link is the same file, so the first file's
// barrier covers it. The
// directories of a maildir are created once per process (and their
// parents fsynced); later deliveries find them in a cache and make no
// stat or mkdir.
//
// File names follow the maildir specification
// (https://cr.yp.to/proto/maildir.html):
// <sec>.M<usec>P<pid>Q<counter>.<host>,S=<size>, with "/" and ":" in the
// host name written as \057 and \072 (Courier's convention). tmp/ files
// older than 36 hours are removed the first time the process uses a
// maildir, as the specification asks.
//
// # Ordered flush
//
// FlushOrdered replaces the data barrier by sync_file_range(2) with
// SYNC_FILE_RANGE_WAIT_BEFORE|WRITE|WAIT_AFTER of each staged file, then
// renames (and links), then fsyncs a new/ (one directory fsync for the
// file system, shared by concurrent commits into any of its maildirs)
// and, submitted right after it, each file, once per inode (see
// orderedBarrier). Nothing is committed before the rename, and the 250
// waits for both fsyncs. Why one journal commit makes that durable on
// ext4 with an internal journal in data=ordered mode:
//
//   - When sync_file_range returns, the file's data has been written to
//     the device (perhaps only to its volatile cache), and the metadata
//     that makes it reachable, the block allocation of delayed
//     allocation, the i_disksize update and the conversion of unwritten
//     extents (done before the pages leave write-back), has joined a
//     jbd2 transaction: the running one, T_a, or an earlier one.
//   - The rename, after that, joins the running transaction T_r, which is
//     T_a or a later one, and marks new/ as changed in T_r. It also sets
//     the file's change time and marks its inode dirty in the same
//     handle, which records T_r as the transaction an fsync of the file
//     must wait for (i_sync_tid); a link does the same.
//   - fsync of a new/ commits the running transaction (ext4_sync_file
//     forces a commit for anything but a regular file), T_r or a later
//     one, and waits for it; so does the fsync of any directory of the
//     file system, which is why one, started after the renames into
//     several new/ directories (several recipients, concurrent
//     deliveries), covers them all: fsyncing each would force a further
//     commit for each, of whatever the other deliveries had begun
//     meanwhile. jbd2 commits transactions strictly in order,
//     so T_a (the allocation) is committed no later than T_r (the name):
//     after a crash the name never points to an unallocated or size-0
//     inode.
//   - The commit record of T_r is written with a cache flush before it
//     (REQ_PREFLUSH, the "barrier" mount option), which makes every write
//     completed before it stable, the file's data included, since that
//     completed before the rename that T_r contains.
//   - The fsync of the file must wait for T_r, and it is submitted
//     right after the directory's (one io_submit(2), whose fsyncs the
//     kernel starts in order, each when the one before sleeps): it finds
//     T_r being committed, with the cache flush before its commit record
//     still to come, and waits for that commit, at no cost of its own.
//     Issued after the commit (as where AIO is refused), it would find
//     T_r done and issue a cache flush of its own (ext4_sync_file asks
//     jbd2_trans_will_send_data_barrier); measured on a loop ext4, 8
//     connections, one recipient: 0.11 such flushes per message against
//     1.0 (bench/README.md, "The file's fsync beside the directory's").
//     Either way it reports the file's write-back errors, and the file
//     was fsynced, successfully, as the rule for a 250 asks, without a
//     journal commit of its own: 0 journal commits in the file's fsync
//     after the directory's, against one each in the order of FlushFsync
//     (bench/README.md, "flush = ordered").
//
// Nowhere else: with fast_commit (refused where the superblock can be
// read; an unprivileged lmtpd cannot tell, see ext4ProcProblem: in the
// power-cut test such a file system lost acknowledged messages with
// FlushFsync too), an fsync may write a fast-commit block instead of
// committing T_a; with data=journal the data
// goes through the journal and write-back does not allocate the way
// above; without a journal (or with data=writeback, or nobarrier, or
// journal_async_commit, whose commit record is not ordered after the
// blocks it covers, or an external journal, where the data device's flush
// is separate) nothing orders the name after the data; XFS, Btrfs and
// other file systems log differently, and none of them promises it. So
// lmtpd checks, once per file system and process, the type in
// /proc/self/mountinfo, the options in force in /proc/fs/ext4/<dev>/options
// (data=ordered, barrier, no journal_async_commit), an internal journal
// (from the superblock read from the device, or, where lmtpd may not read
// it, as the packaged unit's User=lmtpd may not, from the journal's entry
// in /proc/fs/jbd2, "<dev>-<inode>") and the kernel
// (5.8 or later, for sync_file_range's error reporting), and uses
// FlushFsync for any other: FlushAuto says so at info level, FlushOrdered
// with a warning. A file system remounted with other options meanwhile is
// not seen until lmtpd restarts.
//
// The power-cut test (tests/powercut_test.go) checks the default on
// ext4, and on XFS, where it is FlushFsync: every acknowledged message
// whole after a cut, nothing damaged in new/. What FlushOrdered rests on
// beyond fsync's own promise is that a file never shows in new/
// half-written after a crash between the rename and the fsyncs, which
// ext4's journal ordering gives and no standard promises.
//
// # Path safety
//
// Paths come from a Template such as "{domain}/{user}". Every placeholder
// value becomes exactly one path element: bytes outside a small safe set
// are percent-encoded, a leading "." is encoded, so no value can add a
// separator, name "." or "..", or smuggle control characters. The expanded
// path is then checked with filepath.IsLocal, and all file system access
// is resolved below a descriptor of the root that refuses any path
// (symbolic links included) that leads outside it: openat2(2) with
// RESOLVE_BENEATH (Linux 5.6 and later), one call per path, or elsewhere
// an os.Root, which has the same rules but opens one directory per path
// element. A relative symbolic link that stays inside the root is
// followed either way; an absolute one is refused.
//
// # System calls
//
// A delivery of one message to one maildir that exists (its directories
// are known once created or found) costs, with openat2 and unnamed
// files: the file created with one openat2 (O_TMPFILE), the header and
// an in-memory body written with one writev(2), the data barrier's
// fsync, one openat2 for new/ and the linkat(2), and, for the leader of
// the rename barrier, one openat2 and an fsync of new/; three close(2)
// in all. A further recipient costs nothing when staged and an openat2,
// a linkat and a close at Commit (and its own new/ fsync). Named, the
// file is created with O_CREAT|O_EXCL, published with two openat2 for
// the rename's parents and the renameat(2), four close(2) in all, and a
// further recipient's hard link costs two openat2 and a linkat(2) when
// staged and its rename the same again. Descriptors are used directly,
// not through *os.File, which would probe each one with fcntl(2) and
// epoll_ctl(2). A maildir's directories get one stat of tmp/ when first
// used by the process (its device: unnamed files link only within their
// file system). Counted with strace -c (BenchmarkDeliver, 1 KiB): 10
// system calls per delivery to one recipient unnamed against 12 named,
// and 34 against 64 to five recipients sharing one file. With
// FlushOrdered the data barrier is a sync_file_range(2) and the file's
// fsync comes after the fsync of new/. No descriptor is kept between
// deliveries, only the knowledge that a maildir's directories exist:
// every path is resolved anew, so a maildir that was renamed or removed
// meanwhile is never written through a stale descriptor (the write finds
// it missing, and the directories are made again).
//
// # Owners and modes
//
// By default what a Store creates belongs to the process, files 0600 and
// directories 0700. Options.Owner, Options.FileMode and Options.DirMode
// (lmtpd's [delivery.maildir] owner, group, file_mode, dir_mode) and, per
// delivery, Mailbox.Owner (a directory record's uid and gid) change that,
// so that an IMAP server under another uid or in a group can read the
// mail, as Dovecot's mail_uid and mail_gid allow. Owner and mode are set
// with fchown(2) and fchmod(2) on a descriptor of the file or directory
// just created (for a directory, opened right after mkdir), never by path,
// so nothing put at the path in between is touched; directories that
// exist already are left as they are. A directory whose owner cannot be
// set is removed again, so the next delivery creates it properly, and the
// failure is a temporary one (OwnerError, 451 4.3.5) whose log line says
// lmtpd needs CAP_CHOWN. A hard link shares its file's owner, so copies
// for different owners (or homes) are separate files.
//
// # Homes
//
// A Mailbox with Home is a system user's maildir, ~/Maildir: Path is
// relative to the home, everything is created owned by the user (as
// Postfix's local(8) and Dovecot deliver it), files 0600 and directories
// 0700 whatever the modes for the root say. The user controls the home
// and everything in it, and may plant a symbolic link at ~/Maildir/tmp,
// to a directory outside the home or to ~/.ssh inside it, at any time,
// also between two steps of one delivery, hoping lmtpd writes through it.
//
// Two designs keep a hostile user from using lmtpd's rights:
//
//   - (a) lmtpd creates the files itself, resolving every path below the
//     home without following any symbolic link, and gives each file and
//     directory to the user with fchown on its descriptor.
//   - (b) a helper process per delivery that runs with the user's uid and
//     gid (Postfix local(8), Dovecot's dovecot-lda), so the kernel
//     confines it to what the user may do, links or not.
//
// lmtpd does (a), in HomeFS. (b) would fork and exec a process per
// recipient (what the pipe target pays, and a process slot held for the
// delivery, where a maildir delivery otherwise costs a write and an
// fsync), lose the group commit
// of directory fsyncs that concurrent deliveries share, and need a second
// program or a re-exec mode with its own protocol to report per-recipient
// status and the staged/committed split back. It is also not free of the
// same care: the helper still runs lmtpd code in a directory the user
// controls.
//
// What makes (a) safe is that no link is followed at all, not only links
// that leave the home. RESOLVE_BENEATH and os.Root (used for the maildir
// root) refuse to leave their directory but follow links that stay inside
// it: a link from
// ~/Maildir/tmp to ~/.ssh would be followed, and root-created files would
// land there. HomeFS instead opens the home (its path is the
// administrator's, from the account database) and reaches every directory
// below it with openat2(2) and RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, or,
// on kernels before Linux 5.6, one openat(2) per element with
// O_NOFOLLOW|O_DIRECTORY; the last element is created with O_EXCL and
// O_NOFOLLOW (or an unnamed file in tmp/ reached that way), renamed with
// renameat(2) and linked with linkat(2) between descriptors of
// directories reached that way. Directories are opened
// with O_DIRECTORY, so a FIFO put in place of new/ cannot block. A link
// anywhere fails the delivery temporarily (LinkError, 451 4.3.5, logged
// with the path to fix); nothing is written through it.
//
// Races are harmless by construction: once a directory is open, lmtpd
// works on that directory, wherever the user renames it, and the user can
// only move a directory to places the user may write to; a file is only
// ever created new (O_EXCL, or unnamed, which no one else can even
// see), so no existing file, and no hard link the user made to someone
// else's file, is opened or written; renames,
// removals (of old tmp/ files) and links only change names in directories
// reached this way, never a file's content or owner; a file already
// written when the user swaps a directory stays where it was, owned by the
// user. Hard links to directories and mounts are not available to the
// user. So every file lmtpd writes under a home is one the user could have
// created, containing the user's own mail.
//
// The maildir root of virtual users keeps RESOLVE_BENEATH (or its
// os.Root): lmtpd owns that tree, and no user can plant links in it.
//
// # File system failures
//
// A barrier that returns success is not always proof on ext4. Once a
// journal commit has failed (the disk stopped taking writes) jbd2 aborts
// the journal, and an fsync(2) or syncfs(2) that starts after that commit
// finds nothing to commit and returns 0, although the renames the failed
// commit held are lost; ext4 notices the abort only when something next
// starts a journal handle, and since Linux 6.15 it then goes read-only
// with a flag of its own that statfs(2) does not show (measured on 6.18
// with a loop device whose writes were cut: the fsync of new/ after the
// failed one returned 0). So after each successful rename barrier, once
// per barrier group, Commit checks the file system (on Linux): not
// mounted read-only (fstatfs), and on ext4 two futimens(2) of the new/
// just synced (the first makes ext4 notice an aborted journal, the second
// is refused if it did; the renames have just changed new/'s times
// anyway) and /sys/fs/ext4/<dev>/errors_count no higher than when the
// Store first saw the file system. About 60 µs on the test machine,
// against milliseconds for the barrier. If the check fails, the
// deliveries of that barrier fail with 451 4.3.0 (FSError), logged once
// per file system, and so does every later one there until the file
// system passes again (read-write, its error count cleared by e2fsck).
// In the power-cut test (12 rounds each), 16 of 2816 recipients
// acknowledged after the cut were lost with FlushFsync and 6 of 2408 with
// FlushOrdered without the check; with it, none of 2912 and 2847 (nor
// of 1931 with FlushSyncfs, whose barrier, a syncfs of a descriptor
// opened before the cut, reports the error itself).
//
// # Errors
//
// Store methods return *protocol.Error values (see Classify): ENOSPC is 452
// 4.3.1, EDQUOT 552 5.2.2, a message over the size limit 552 5.3.4,
// permission problems, an owner that cannot be set, a link in a home, a
// missing home and a missing root 451 4.3.5, any other I/O error 451
// 4.3.0.
package maildir
