package btrfs

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/ferry-nas/ferry/logging"
	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/metafile"
)

// spoolState is <name>.spool.json beside a staged receive's spool: the
// last checkpoint. The spool's first Position.Offset bytes are durable.
type spoolState struct {
	Version      int    `json:"version"`
	Dataset      string `json:"dataset"`
	Name         string `json:"name"`
	SourceGUID   string `json:"source_guid,omitempty"`
	TargetParent string `json:"target_parent,omitempty"`
	// TargetParentGUID is the target base's own uuid when the receive began.
	TargetParentGUID string          `json:"target_parent_guid,omitempty"`
	Position         resume.Position `json:"position"`
	// Stream is the parser's state at Position (a command boundary).
	Stream streamState `json:"stream"`
	// Complete: the whole stream (through io.EOF) is in the spool.
	Complete  bool      `json:"complete"`
	StartedAt time.Time `json:"started_at"`
	At        time.Time `json:"at"`
}

// loadSpoolState reads a resume state; (nil, nil) when there is none.
func loadSpoolState(p string) (*spoolState, error) {
	var st spoolState
	if found, err := metafile.ReadJSON(p, &st); !found || err != nil {
		return nil, err
	}
	if st.Position.Offset < streamHeaderLen || (len(st.Position.HashState) == 0) {
		return nil, fmt.Errorf("%s holds no usable position", p)
	}
	return &st, nil
}

// origin is what the spooled receive is of, for storage.CheckResume.
func (st *spoolState) origin() storage.ReceiveOrigin {
	return storage.ReceiveOrigin{Name: st.Name, SourceGUID: st.SourceGUID, Parent: st.TargetParent, ParentGUID: st.TargetParentGUID}
}

// resumableSpool is the spool of receive name that a retry can continue:
// a readable checkpoint whose spool holds at least the checkpointed bytes.
// Anything else is not resumable (Partials says why).
func (b *Backend) resumableSpool(ds, name string) *spoolState {
	state, err := loadSpoolState(b.spoolStatePath(ds, name))
	if err != nil || state == nil {
		return nil
	}
	if fi, err := os.Stat(b.spoolPath(ds, name)); err != nil || fi.Size() < state.Position.Offset {
		return nil
	}
	return state
}

// Receive implements storage.Backend. The stream is parsed and checked
// command by command (framing, CRCs, paths, identity) before btrfs receive
// sees it; btrfs receive runs chrooted into .ferry/staging/<ds>/<name>/. In
// staged mode the stream is spooled to .ferry/staging/<ds>/<name>.spool
// with checkpoints and applied from the spool as it lands; in off mode it
// is piped straight into btrfs receive. Either way btrfs receive only gets
// the stream's end command after io.EOF, so a stream that fails (even
// after its last byte) never produces a finished subvolume. Then
// the result is checked (read-only, received_uuid, parent) and only
// then moved to .ferry/snapshots/<ds>/<name>.
func (b *Backend) Receive(ctx context.Context, req storage.ReceiveRequest, s resume.Stream) (storage.Snapshot, error) {
	const op = "receive"
	ds, name := req.Dataset, req.Name
	unlock, err := b.locks.LockSnapshot(op, ds, name, req.Parent)
	if err != nil {
		return storage.Snapshot{}, err
	}
	defer unlock()

	st, err := b.inspect(ctx, ds, name)
	if err != nil {
		return storage.Snapshot{}, classify(err, storage.KindTemporary, op, ds, name)
	}
	if st.complete { // unmodified since its commit (inspect)
		return storage.ReceivedAlready(ctx, op, req, st.snapshot(ds))
	}
	if st.exists && st.class != classPartial {
		return storage.Snapshot{}, b.anomaly(ds, st).Err(op)
	}
	if _, foreign, err := b.stagingPartial(ctx, ds, name); err != nil {
		return storage.Snapshot{}, classify(err, storage.KindTemporary, op, ds, name)
	} else if foreign != nil {
		return storage.Snapshot{}, foreign.Err(op)
	}
	if err := b.view(ds).Check(op); err != nil {
		return storage.Snapshot{}, err
	}
	rx := &receiver{b: b, ctx: ctx, req: req, s: s, op: op}
	rx.rules = streamRules{name: name, sourceUUID: req.SourceGUID}
	if req.Parent != "" {
		if rx.parent, err = b.complete(ctx, op, ds, req.Parent); err != nil {
			return storage.Snapshot{}, storage.BaseNotFound(err, req.Parent)
		}
		rx.rules.incremental = true
		for _, u := range []string{rx.parent.sv.ReceivedUUID, rx.parent.sv.UUID} {
			if u != "" {
				rx.rules.parentUUIDs = append(rx.rules.parentUUIDs, u)
			}
		}
	}

	// Resume a spool, or start from nothing.
	pos := s.Position()
	state := b.resumableSpool(ds, name)
	var held *storage.HeldPartial
	if state != nil {
		held = &storage.HeldPartial{Origin: state.origin(), Position: state.Position}
	}
	continues, err := storage.CheckResume(op, req, storage.OriginOf(req, rx.parentUUID()), pos, held)
	if err != nil {
		return storage.Snapshot{}, err
	}
	if !continues {
		state = nil
	}
	cleanup := context.WithoutCancel(ctx)
	if state == nil {
		if _, serr := os.Lstat(b.stage(ds, name)); serr == nil {
			// An earlier attempt's half-received subvolume (resume off, or
			// nothing durable): never completed, never listed, gone now.
			storage.Logger(ctx, b.log).Warn("discarding the partial receive an earlier attempt left; receiving from the start",
				zap.String("dataset", ds), logging.Snapshot(name), zap.String("path", b.stage(ds, name)))
		}
		err = b.discardStaging(cleanup, ds, name)
	} else {
		// An apply that was interrupted is redone from the spool.
		err = b.removeTree(cleanup, b.stage(ds, name))
	}
	if err == nil && st.exists {
		storage.Logger(ctx, b.log).Warn("removing an incomplete snapshot before receiving it again", zap.String("dataset", ds), logging.Snapshot(name), zap.String("reason", st.reason))
		err = b.removeTree(cleanup, b.container(ds, name))
	}
	if err == nil {
		err = b.writeReceiveRecord(req)
	}
	if err != nil {
		return storage.Snapshot{}, classify(err, storage.KindTemporary, op, ds, name)
	}

	mode, why, err := b.chooseMode(req, state != nil)
	if err != nil {
		return storage.Snapshot{}, err
	}
	rx.mode = mode
	storage.Logger(ctx, b.log).Info("receive", zap.String("dataset", ds), logging.Snapshot(name), zap.String("mode", string(mode)), zap.String("why", why),
		zap.Int64("expected_bytes", req.ExpectedSize), zap.Int64("from_offset", pos.Offset))
	var snap storage.Snapshot
	if mode == storage.ResumeStaged {
		snap, err = rx.staged(state)
	} else {
		snap, err = rx.direct()
	}
	if err == nil {
		b.refreshView(ctx, ds)
		return snap, nil
	}
	err = rx.classify(err)
	if !storage.KeepsPartial(err) {
		derr := b.discardStaging(cleanup, ds, name)
		if storage.KindOf(err) == storage.KindNoSpace {
			b.reclaim(cleanup)
			err = rx.noSpace(err)
		}
		if derr != nil {
			storage.Logger(ctx, b.log).Warn("discarding a failed receive", zap.String("dataset", ds), logging.Snapshot(name), zap.Error(derr))
		}
	}
	return storage.Snapshot{}, err
}

// chooseMode picks staged or off for a receive.
func (b *Backend) chooseMode(req storage.ReceiveRequest, resuming bool) (mode storage.ResumeMode, why string, err error) {
	if resuming {
		return storage.ResumeStaged, "resuming a spooled receive", nil
	}
	switch req.Mode {
	case storage.ResumeStaged:
		return storage.ResumeStaged, "the job asks for it", nil
	case storage.ResumeOff:
		return storage.ResumeOff, "the job asks for it", nil
	case "", storage.ResumeAuto:
	default:
		return "", "", storage.Errorf(storage.KindInvalid, "receive", req.Dataset, req.Name, "set stream.resume to auto, staged or off", "unknown resume mode %q", req.Mode)
	}
	if req.ExpectedSize < b.stagedThreshold {
		return storage.ResumeOff, fmt.Sprintf("expected %d bytes, below the staging threshold of %d", req.ExpectedSize, b.stagedThreshold), nil
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(b.root, &sfs); err != nil {
		return storage.ResumeOff, "cannot tell the free space: " + err.Error(), nil
	}
	free := int64(sfs.Bavail) * sfs.Bsize
	need := 2*req.ExpectedSize + req.ExpectedSize/20 + 64<<20
	if free < need {
		return storage.ResumeOff, fmt.Sprintf("%d bytes free, %d needed for spool and data", free, need), nil
	}
	return storage.ResumeStaged, fmt.Sprintf("expected %d bytes, room for spool and data", req.ExpectedSize), nil
}

type receiver struct {
	b      *Backend
	ctx    context.Context
	req    storage.ReceiveRequest
	s      resume.Stream
	op     string
	mode   storage.ResumeMode
	parent *snapState
	rules  streamRules
}

// parentUUID is the target base's own uuid; empty for a full receive.
func (rx *receiver) parentUUID() string {
	if rx.parent == nil {
		return ""
	}
	return rx.parent.sv.UUID
}

// classify maps the failure of a receive onto storage kinds.
func (rx *receiver) classify(err error) error {
	ds, name := rx.req.Dataset, rx.req.Name
	var (
		se *storage.Error
		fe *formatError
		re *readError
		bm *baseMismatch
		ce *cmdError
	)
	switch {
	case errors.As(err, &se):
		return err
	case errors.As(err, &re):
		return &storage.Error{Kind: storage.KindTemporary, Op: rx.op, Dataset: ds, Snapshot: name, Err: err}
	case errors.As(err, &fe):
		return &storage.Error{Kind: storage.KindInvalid, Op: rx.op, Dataset: ds, Snapshot: name, Err: fmt.Errorf("invalid btrfs stream: %w", err)}
	case errors.As(err, &bm):
		return &storage.Error{Kind: storage.KindConflict, Op: rx.op, Dataset: ds, Snapshot: name, Err: err,
			Fix: "the target's base is not the snapshot the stream was made from; plan the step again"}
	case errors.As(err, &ce):
		kind, fix := cmdKind(ce, storage.KindInvalid)
		if kind == storage.KindInvalid {
			switch {
			case containsAny(ce.stderr, "cannot find parent subvolume"):
				kind, fix = storage.KindConflict, "the target's base is not the snapshot the stream was made from; plan the step again"
			case containsAny(ce.stderr, "Input/output error", "Cannot allocate memory", "Resource temporarily unavailable"):
				kind = storage.KindTemporary
			}
		}
		return &storage.Error{Kind: kind, Op: rx.op, Dataset: ds, Snapshot: name, Err: fmt.Errorf("btrfs receive failed: %w", err), Fix: fix}
	}
	if rx.ctx.Err() != nil {
		return &storage.Error{Kind: storage.KindTemporary, Op: rx.op, Dataset: ds, Snapshot: name, Err: err}
	}
	return storage.Wrap(err, storage.KindTemporary, rx.op, ds, name)
}

// reclaim waits (a bounded time) until the subvolumes just deleted are
// cleaned up, so that their space is free again when NoSpace reports it.
// btrfs frees a deleted subvolume's extents in the background: measured on
// a 128 MiB image, `btrfs filesystem sync` (which wakes the cleaner), then
// `btrfs subvolume sync` frees it in 50 ms; the subvolume sync alone waits
// for the 30 s commit interval.
func (b *Backend) reclaim(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	_, err := b.run(ctx, "filesystem", "sync", b.root)
	if err == nil {
		_, err = b.run(ctx, "subvolume", "sync", b.root)
	}
	if err == nil {
		err = syncFS(b.root)
	}
	if err != nil {
		b.log.Warn("waiting for btrfs to free a discarded receive's space", zap.Error(err))
	}
}

// noSpace turns a receive that ran out of space into the shared NoSpace
// error: the file btrfs receive was writing (or the spool), the snapshot's
// expected size, the space free now that the partial is discarded.
func (rx *receiver) noSpace(err error) error {
	what, cause := "the receive's staging area", err
	var ce *cmdError
	switch {
	case errors.As(err, &ce):
		if p := ce.failedPath(); p != "" {
			what = strconv.Quote(p)
		}
		cause = fmt.Errorf("btrfs receive: %s", ce.stderr)
	case rx.mode == storage.ResumeStaged:
		what = "the stream's spool " + rx.b.rel(rx.b.spoolPath(rx.req.Dataset, rx.req.Name))
		for _, errno := range []unix.Errno{unix.ENOSPC, unix.EDQUOT} {
			if errors.Is(err, errno) {
				cause = errno
			}
		}
	}
	return storage.NoSpace(rx.op, rx.req.Dataset, rx.req.Name, what, rx.req.ExpectedSize, rx.s.Position().Offset, rx.b.root, cause)
}

// ---- staged ----

// staged spools the stream (continuing state's spool when set) and applies
// it while it lands: btrfs receive gets the spool's bytes (those of an
// earlier attempt first) as they are written, all but the end command,
// which it gets only once the stream ended cleanly (io.EOF).
// The spool stays the truth: when anything fails, a retry resumes from its
// checkpoint and applies the spool again from its start.
func (rx *receiver) staged(state *spoolState) (storage.Snapshot, error) {
	b, ds, name := rx.b, rx.req.Dataset, rx.req.Name
	if err := b.lay.MkdirAll(b.stagingDir(ds)); err != nil {
		return storage.Snapshot{}, err
	}
	spoolPath := b.spoolPath(ds, name)
	f, err := os.OpenFile(spoolPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return storage.Snapshot{}, err
	}
	defer f.Close()
	sr := newStreamReader(rx.s)
	var st streamState
	started := time.Now().UTC()
	var written int64
	lastCk := int64(-1)
	if state != nil {
		if err := f.Truncate(state.Position.Offset); err != nil {
			return storage.Snapshot{}, err
		}
		if _, err := f.Seek(state.Position.Offset, io.SeekStart); err != nil {
			return storage.Snapshot{}, err
		}
		sr.version, st, started = state.Stream.Version, state.Stream, state.StartedAt
		written, lastCk = state.Position.Offset, state.Position.Offset
	} else {
		if err := f.Truncate(0); err != nil {
			return storage.Snapshot{}, err
		}
		hdr, err := sr.header()
		if err != nil {
			return storage.Snapshot{}, err
		}
		if _, err := f.Write(hdr); err != nil {
			return storage.Snapshot{}, err
		}
		st.Version = sr.version
		written = int64(len(hdr))
	}
	stage := b.stage(ds, name)
	if err := os.Mkdir(stage, 0o700); err != nil {
		return storage.Snapshot{}, err
	}
	ap, err := rx.startApply(spoolPath, written, st.Ended)
	if err != nil {
		return storage.Snapshot{}, err
	}
	// Whatever ends the receive early kills btrfs receive before it saw the
	// end command: no finished subvolume comes of it.
	defer ap.abort()
	w := bufio.NewWriterSize(f, 1<<20)
	lastCkAt := time.Now()
	// base is the last position taken with its hash state (the start, or
	// the last checkpoint begun); the spool holds every byte after it. Per
	// command only the offset is taken: a Position folds and copies the
	// digest's state, which cost more CPU than the digest itself.
	base := rx.s.Position()
	boundary := base.Offset
	if boundary != written {
		return storage.Snapshot{}, fmt.Errorf("internal error: stream position %d, spool %d bytes", boundary, written)
	}
	save := func(r ckReq) error {
		s := &spoolState{Version: 1, Dataset: ds, Name: name, SourceGUID: rx.req.SourceGUID, TargetParent: rx.req.Parent, TargetParentGUID: rx.parentUUID(),
			Position: r.pos, Stream: r.st, Complete: r.complete, StartedAt: started, At: time.Now().UTC()}
		data, err := json.Marshal(s)
		if err != nil {
			return err
		}
		return metafile.WriteAtomic(b.spoolStatePath(ds, name), data)
	}
	// settled: a checkpoint is durable; a failed one fails the receive.
	settled := func(d ckDone) error {
		if d.err != nil {
			return d.err
		}
		lastCk = d.pos.Offset
		if rx.req.Durable != nil {
			rx.req.Durable(d.pos)
		}
		return nil
	}
	ck := newCheckpointer(f, save)
	defer ck.stop()
	// checkpoint makes everything up to pos durable now (after the one in
	// flight): at the end of the stream and when it fails.
	checkpoint := func(pos resume.Position, st streamState, complete bool) error {
		if d, ok := ck.wait(); ok {
			if err := settled(d); err != nil {
				return err
			}
		}
		if err := w.Flush(); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		if err := save(ckReq{pos: pos, st: st, complete: complete}); err != nil {
			return err
		}
		return settled(ckDone{pos: pos})
	}
	// Every 16 MiB or 2 s (the options) a checkpoint starts in the
	// background; the stream goes on meanwhile.
	lastStarted := written
	for {
		if d, ok := ck.poll(); ok {
			if err := settled(d); err != nil {
				return storage.Snapshot{}, err
			}
		}
		c, err := sr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			var re *readError
			if errors.As(err, &re) && boundary > lastCk {
				// Keep every whole command that arrived: a retry resumes here.
				cerr := w.Flush()
				var at resume.Position
				if cerr == nil {
					at, cerr = spoolPosition(f, base, boundary)
				}
				if cerr == nil {
					cerr = checkpoint(at, st, false)
				}
				if cerr != nil {
					return storage.Snapshot{}, errors.Join(err, cerr)
				}
			}
			return storage.Snapshot{}, err
		}
		if err := st.check(c, &rx.rules); err != nil {
			return storage.Snapshot{}, err
		}
		if _, err := w.Write(c.raw); err != nil {
			return storage.Snapshot{}, err
		}
		if err := ap.command(c); err != nil {
			return storage.Snapshot{}, err
		}
		written += int64(len(c.raw))
		boundary = rx.s.Offset()
		if boundary != written {
			return storage.Snapshot{}, fmt.Errorf("internal error: stream position %d, spool %d bytes", boundary, written)
		}
		if !ck.busy && (written-lastStarted >= b.ckptBytes || time.Since(lastCkAt) >= b.ckptEvery) {
			if err := w.Flush(); err != nil {
				return storage.Snapshot{}, err
			}
			base = rx.s.Position()
			ck.start(ckReq{pos: base, st: st})
			lastStarted, lastCkAt = written, time.Now()
		}
	}
	if !st.Ended {
		return storage.Snapshot{}, badStream("stream ended at byte %d before its end command (truncated)", written)
	}
	// The stream ended cleanly (io.EOF): btrfs receive gets the end command
	// while the complete checkpoint is made. A worker that dies before the
	// commit leaves the spool to resume from (complete, or at the last
	// checkpoint), and a retry applies it again.
	if d, ok := ck.wait(); ok {
		if err := settled(d); err != nil {
			return storage.Snapshot{}, err
		}
	}
	if err := w.Flush(); err != nil {
		return storage.Snapshot{}, err
	}
	ck.start(ckReq{pos: rx.s.Position(), st: st, complete: true})
	aerr := ap.end()
	d, _ := ck.wait()
	if aerr != nil {
		return storage.Snapshot{}, aerr
	}
	if err := settled(d); err != nil {
		return storage.Snapshot{}, err
	}
	if err := f.Close(); err != nil {
		return storage.Snapshot{}, err
	}
	return rx.finish(&st)
}

// spoolPosition is the stream position at offset off: from's hash state
// advanced over the spool's bytes [from.Offset, off), which the spool holds
// (flushed) exactly as they arrived.
func spoolPosition(spool *os.File, from resume.Position, off int64) (resume.Position, error) {
	h, err := from.Hasher()
	if err != nil {
		return resume.Position{}, err
	}
	if _, err := io.Copy(h, io.NewSectionReader(spool, from.Offset, off-from.Offset)); err != nil {
		return resume.Position{}, fmt.Errorf("read the spool back for its position: %w", err)
	}
	return resume.At(off, h), nil
}

// ---- off: straight into btrfs receive ----

func (rx *receiver) direct() (storage.Snapshot, error) {
	b, ds, name := rx.b, rx.req.Dataset, rx.req.Name
	if err := b.lay.MkdirAll(b.stagingDir(ds)); err != nil {
		return storage.Snapshot{}, err
	}
	stage := b.stage(ds, name)
	if err := os.Mkdir(stage, 0o700); err != nil {
		return storage.Snapshot{}, err
	}
	sr := newStreamReader(rx.s)
	hdr, err := sr.header()
	if err != nil {
		return storage.Snapshot{}, err
	}
	ap, err := rx.newApplier()
	if err != nil {
		return storage.Snapshot{}, err
	}
	// Whatever ends the receive early kills btrfs receive before it saw the
	// end command (the checked commands that arrived still reach it, so the
	// partial shows how far it got): no finished subvolume comes of it.
	defer ap.abort()
	st := streamState{Version: sr.version}
	if err := ap.write(hdr); err != nil {
		return storage.Snapshot{}, err
	}
	for {
		c, err := sr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return storage.Snapshot{}, err
		}
		if err := st.check(c, &rx.rules); err != nil {
			return storage.Snapshot{}, err
		}
		if err := ap.command(c); err != nil {
			return storage.Snapshot{}, err
		}
	}
	if !st.Ended {
		return storage.Snapshot{}, badStream("stream ended at byte %d before its end command (truncated)", sr.n)
	}
	// The stream ended cleanly (io.EOF, where the data plane has checked its
	// trailer): only now does btrfs receive get the end command.
	if err := ap.end(); err != nil {
		return storage.Snapshot{}, err
	}
	return rx.finish(&st)
}

// ---- checking and committing ----

// finish checks what btrfs receive made in the staging directory as a
// careful administrator would, then commits it: metadata written, the
// staging directory renamed into .ferry/snapshots/<ds>/<name>, the spool
// removed. (A read-only subvolume cannot itself be moved to another
// directory, which is why each snapshot lives in a directory of its own.)
func (rx *receiver) finish(st *streamState) (storage.Snapshot, error) {
	b, ds, name := rx.b, rx.req.Dataset, rx.req.Name
	stage := b.stage(ds, name)
	entries, err := os.ReadDir(stage)
	if err != nil {
		return storage.Snapshot{}, err
	}
	if len(entries) != 1 || entries[0].Name() != name {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return storage.Snapshot{}, badStream("the stream wrote outside its subvolume: the receive directory holds %q", names)
	}
	svPath := stage + "/" + name
	if ok, err := isSubvolume(svPath); err != nil {
		return storage.Snapshot{}, err
	} else if !ok {
		return storage.Snapshot{}, badStream("btrfs receive made no subvolume %q", name)
	}
	// Commit first: the kernel reports the committed root item, and btrfs
	// receive's last changes (received_uuid, read-only) are in the running
	// transaction.
	if err := syncFS(stage); err != nil {
		return storage.Snapshot{}, err
	}
	sv, err := b.show(rx.ctx, svPath)
	if err != nil {
		return storage.Snapshot{}, err
	}
	conflict := func(format string, args ...any) (storage.Snapshot, error) {
		return storage.Snapshot{}, storage.Errorf(storage.KindConflict, rx.op, ds, name, "discard the receive and plan the step again", format, args...)
	}
	switch {
	case !sv.ReadOnly || sv.ReceivedUUID == "":
		return storage.Snapshot{}, badStream("btrfs receive ended without finishing the subvolume (%s)", describe(sv))
	case sv.ReceivedUUID != st.UUID:
		return conflict("received_uuid %s, but the stream was of %s", sv.ReceivedUUID, st.UUID)
	case rx.req.SourceGUID != "" && sv.ReceivedUUID != rx.req.SourceGUID:
		return conflict("received_uuid %s, expected %s", sv.ReceivedUUID, rx.req.SourceGUID)
	case sv.Stransid != st.Ctransid:
		return conflict("stransid %d, but the stream carried ctransid %d", sv.Stransid, st.Ctransid)
	case rx.parent == nil && sv.ParentUUID != "":
		return conflict("a full receive made a snapshot of %s", sv.ParentUUID)
	case rx.parent != nil && sv.ParentUUID != rx.parent.sv.UUID:
		return conflict("btrfs applied the incremental on subvolume %s, not on the base %q (%s)", sv.ParentUUID, rx.req.Parent, rx.parent.sv.UUID)
	}
	end := rx.s.Position()
	m := &meta{
		Version: 1, Dataset: ds, Name: name, Kind: kindReceived, UUID: sv.UUID, ReceivedUUID: sv.ReceivedUUID,
		ParentGUID: st.CloneUUID, TargetParent: rx.req.Parent, ParentUUID: sv.ParentUUID,
		Ctransid: sv.Ctransid, Stransid: sv.Stransid, CreatedAt: sv.Created,
		DatasetGUID: rx.req.SourceDatasetGUID, Mode: string(rx.mode), StreamBytes: end.Offset,
	}
	if d, err := end.PrefixDigest(); err == nil {
		m.StreamDigest = end.Algorithm() + ":" + hex.EncodeToString(d[:])
		if end.Algorithm() == resume.SHA256 {
			m.StreamSHA256 = hex.EncodeToString(d[:])
		}
	}
	if err := metafile.WriteJSON(stage+"/"+metaFile, m); err != nil {
		return storage.Snapshot{}, err
	}
	if err := b.lay.MkdirAll(b.snapDir(ds)); err != nil {
		return storage.Snapshot{}, err
	}
	if err := unix.Renameat2(unix.AT_FDCWD, stage, unix.AT_FDCWD, b.container(ds, name), unix.RENAME_NOREPLACE); err != nil {
		return storage.Snapshot{}, fmt.Errorf("commit %s: %w", name, err)
	}
	if err := errors.Join(metafile.SyncDir(b.snapDir(ds)), metafile.SyncDir(b.stagingDir(ds))); err != nil {
		return storage.Snapshot{}, err
	}
	for _, p := range []string{b.spoolPath(ds, name), b.spoolStatePath(ds, name), b.recordPath(ds, name)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			storage.Logger(rx.ctx, b.log).Warn("removing the spool of a committed receive", zap.String("path", p), zap.Error(err))
		}
	}
	removeIfEmpty(b.stagingDir(ds))
	storage.Logger(rx.ctx, b.log).Info("received", zap.String("dataset", ds), logging.Snapshot(name), zap.String("uuid", sv.UUID),
		zap.String("received_uuid", sv.ReceivedUUID), zap.String("mode", string(rx.mode)), zap.Int64("stream_bytes", end.Offset))
	done := &snapState{name: name, exists: true, meta: m, sv: sv, complete: true}
	return done.snapshot(ds), nil
}
