package zfs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os/exec"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
)

// receiveRecord is what ferry writes (as the root's property
// ferry:recv:<dataset>) before it starts a zfs receive, so that an
// interrupted one is a Partial it can name and discard.
type receiveRecord struct {
	Name       string `json:"name"`
	SourceGUID string `json:"source_guid,omitempty"`
	Parent     string `json:"parent,omitempty"`
	ParentGUID string `json:"parent_guid,omitempty"`
	// Full is set when the receive was making the dataset itself.
	Full bool `json:"full,omitempty"`
	// Resumable: the receive ran with -s, so an interruption leaves resume
	// state (a receive_resume_token) on the dataset; Started (Unix
	// nanoseconds) says which record a token belongs to (the newest).
	Resumable bool  `json:"resumable,omitempty"`
	Started   int64 `json:"started,omitempty"`
}

func (b *Backend) recvProp(dataset, name string) string {
	return recvPrefix + escapeProp(dataset+"@"+name)
}

// records returns the receives in progress into dataset, by snapshot name.
func (b *Backend) records(ctx context.Context, dataset string) (map[string]receiveRecord, error) {
	props, err := b.localUserProps(ctx, b.root, recvPrefix)
	if err != nil {
		return nil, err
	}
	out := map[string]receiveRecord{}
	for k, v := range props {
		key, ok := unescapeProp(k)
		name, found := strings.CutPrefix(key, dataset+"@")
		if !ok || !found || strings.Contains(name, "/") {
			continue
		}
		var r receiveRecord
		// An unreadable record is still ferry's partial, discardable by its name.
		_ = json.Unmarshal([]byte(v), &r)
		r.Name = name
		out[name] = r
	}
	return out, nil
}

// holdBack is how much of the stream zfs receive gets only after the
// stream ended cleanly: more than its end record, so that a stream failing
// after its last byte (the data plane's trailer) never commits a snapshot.
const holdBack = 64 << 10

// Receive implements storage.Backend: `zfs receive` (with -u where the tool
// has it, never -F) of the stream as dataset@name. A full stream is only
// received into a dataset that does not exist; an incremental only onto its
// base as the newest snapshot of an unmodified dataset. Anything else is a
// Conflict naming what is in the way; nothing is rolled back or destroyed.
func (b *Backend) Receive(ctx context.Context, req storage.ReceiveRequest, s resume.Stream) (storage.Snapshot, error) {
	const op = "receive"
	ds, name := req.Dataset, req.Name
	names := []string{name}
	if req.Parent != "" {
		names = append(names, req.Parent)
	}
	if err := checkNames(op, ds, names...); err != nil {
		return storage.Snapshot{}, err
	}
	if req.Mode == storage.ResumeStaged {
		return storage.Snapshot{}, storage.Errorf(storage.KindUnsupported, op, ds, name,
			"set the job's stream.resume to auto or off for a zfs target",
			"the zfs backend does not spool streams (stream.resume: staged)")
	}
	unlock, err := b.locks.LockSnapshot(op, ds, name, req.Parent)
	if err != nil {
		return storage.Snapshot{}, err
	}
	defer unlock()

	target, snaps, exists, err := b.find(ctx, op, ds, name)
	if err != nil {
		return storage.Snapshot{}, err
	}
	var parent *zsnap
	if req.Parent != "" {
		for i := range snaps {
			if snaps[i].name == req.Parent && snaps[i].ferrys() {
				parent = &snaps[i]
			}
		}
	}
	parentID := ""
	if parent != nil {
		parentID = parent.ident()
	}
	// No partial continues by offset here (streams are not deterministic);
	// one continues natively, by its resume token (resume.go).
	if _, err := storage.CheckResume(op, req, storage.OriginOf(req, parentID), s.Position(), nil); err != nil {
		return storage.Snapshot{}, err
	}
	resuming := req.ResumeToken != ""
	if b.feat.ResumableReceive {
		recs, err := b.records(ctx, ds)
		if err != nil {
			return storage.Snapshot{}, classify(err, storage.KindTemporary, op, ds, name, "")
		}
		aborted := false
		if resuming {
			err = b.checkResumeToken(ctx, op, req, recs)
		} else {
			// Starting over: the resume state of ferry's earlier receive
			// (which makes the dataset of a full stream exist) goes first.
			aborted, err = b.abortResumable(ctx, op, ds, name, recs)
		}
		if err != nil {
			return storage.Snapshot{}, err
		}
		if aborted {
			if target, snaps, exists, err = b.find(ctx, op, ds, name); err != nil {
				return storage.Snapshot{}, err
			}
		}
	} else if resuming {
		return storage.Snapshot{}, b.checkResumeToken(ctx, op, req, nil)
	}
	switch {
	case target != nil && target.ferrys():
		return storage.ReceivedAlready(ctx, op, req, target.toSnapshot(ds))
	case req.Parent == "" && exists && !resuming:
		var held []string
		for _, s := range snaps {
			held = append(held, s.name)
		}
		return storage.Snapshot{}, storage.Errorf(storage.KindConflict, op, ds, name,
			"ZFS receives a full stream only into a dataset that does not exist and ferry never forces it (-F): rename or destroy "+b.full(ds)+" if it is not needed, or keep a common snapshot so that an incremental can be sent",
			"dataset %s exists (snapshots: %s)", b.full(ds), listOrNone(held))
	case req.Parent != "" && parent == nil:
		return storage.Snapshot{}, storage.BaseNotFound(notFound(op, ds, req.Parent), req.Parent)
	}
	if target != nil && !resuming {
		// Only an unrecorded leftover of ferry's own receive of this name is discarded.
		if recs, _ := b.records(ctx, ds); recs == nil || recs[name].Name != name {
			return storage.Snapshot{}, foreignSnapshot(op, ds, name)
		}
	}
	if parent != nil {
		var newer []string
		for _, s := range snaps {
			if s.createtxg > parent.createtxg && s.name != name {
				newer = append(newer, s.name)
			}
		}
		if len(newer) > 0 {
			return storage.Snapshot{}, storage.Errorf(storage.KindConflict, op, ds, name,
				"ferry never rolls back: destroy those snapshots on the target if they are not needed, then run the job again",
				"%s holds snapshots newer than the base %q: %s", b.full(ds), req.Parent, strings.Join(newer, ", "))
		}
		if err := b.checkUnwritten(ctx, op, ds, name, req.Parent); err != nil {
			return storage.Snapshot{}, err
		}
	}

	if !resuming {
		// The stream's header before anything on the target changes (a
		// resumed stream continues one whose header was checked).
		if s, err = readHead(op, req, parent, s); err != nil {
			return storage.Snapshot{}, err
		}
		if err := b.startReceive(ctx, op, req, parent); err != nil {
			return storage.Snapshot{}, err
		}
	}

	received, err := b.runReceive(ctx, ds, name, s, resuming || b.resumable(req))
	if err == nil {
		// zfs-fuse's receive can exit 0 on a stream cut short without making the snapshot.
		if got, _, _, ferr := b.find(ctx, op, ds, name); ferr != nil {
			err = ferr
		} else if got == nil {
			err = storage.Errorf(storage.KindInvalid, op, ds, name, "the stream is incomplete: send it again",
				"zfs receive made no snapshot of the stream's %d bytes", received)
		}
	}
	if err == nil {
		err = b.commit(ctx, op, req, parent)
	}
	if err != nil {
		if storage.KeepsPartial(err) {
			return storage.Snapshot{}, err
		}
		if derr := b.discard(context.WithoutCancel(ctx), op, ds, name); derr != nil {
			storage.Logger(ctx, b.log).Warn("zfs: cannot discard the failed receive",
				zap.String("dataset", ds), zap.String("snapshot", name), zap.Error(derr))
		}
		if storage.IsNoSpace(err) {
			return storage.Snapshot{}, b.noSpace(ctx, op, req, received, err)
		}
		return storage.Snapshot{}, err
	}
	got, _, _, err := b.find(ctx, op, ds, name)
	if err != nil {
		return storage.Snapshot{}, err
	}
	if got == nil || !got.ferrys() {
		return storage.Snapshot{}, storage.Errorf(storage.KindTemporary, op, ds, name, "", "the received snapshot is not listed")
	}
	return got.toSnapshot(ds), nil
}

// startReceive starts over: it discards what an earlier receive of this
// dataset left, creates the dataset's parents and writes the record that
// makes the receive ferry's partial until it is committed.
func (b *Backend) startReceive(ctx context.Context, op string, req storage.ReceiveRequest, parent *zsnap) error {
	ds, name := req.Dataset, req.Name
	if err := b.discard(ctx, op, ds, name); err != nil {
		return err
	}
	if err := b.ensureParent(ctx, op, ds, name); err != nil {
		return err
	}
	rec := receiveRecord{Name: name, SourceGUID: req.SourceGUID, Parent: req.Parent, Full: req.Parent == ""}
	if b.resumable(req) {
		rec.Resumable, rec.Started = true, time.Now().UnixNano()
	}
	if parent != nil {
		rec.ParentGUID = parent.props[propReceivedGUID]
	}
	js, _ := json.Marshal(rec)
	if _, err := run(ctx, b.zfs, nil, "set", b.recvProp(ds, name)+"="+string(js), b.root); err != nil {
		return classify(err, storage.KindTemporary, op, ds, name, "")
	}
	return nil
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// checkUnwritten refuses an incremental onto a dataset written since its
// base, where the pool tells (written@); elsewhere zfs receive refuses it.
func (b *Backend) checkUnwritten(ctx context.Context, op, ds, name, base string) error {
	if !b.feat.Written {
		return nil
	}
	out, err := run(ctx, b.zfs, nil, "get", "-H", "-p", "-o", "value", "written@"+base, b.full(ds))
	if err != nil {
		return nil // not answered: zfs receive still refuses a modified target
	}
	if n, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64); err == nil && n > 0 {
		return modified(op, b.full(ds), ds, name, fmt.Sprintf("%d bytes written since %q", n, base))
	}
	return nil
}

func modified(op, fds, ds, name, what string) error {
	return storage.Errorf(storage.KindConflict, op, ds, name,
		"the replica was changed on the target; ferry never rolls back: keep what you need, then `zfs rollback` "+fds+" to its newest snapshot yourself and set readonly=on, and run the job again",
		"%s was modified since its newest snapshot (%s)", fds, what)
}

// ensureParent creates the datasets above ds below the root (mounted,
// empty): zfs receive needs its parent.
func (b *Backend) ensureParent(ctx context.Context, op, ds, name string) error {
	dir := path.Dir(ds)
	if dir == "." {
		return nil
	}
	if _, err := run(ctx, b.zfs, nil, "list", "-H", "-o", "name", b.full(dir)); err == nil {
		return nil
	}
	if _, err := run(ctx, b.zfs, nil, "create", "-p", b.full(dir)); err != nil {
		return classify(err, storage.KindTemporary, op, ds, name, "")
	}
	return nil
}

// runReceive feeds s to zfs receive (with -s: resumable), holding back its
// last bytes until the stream ended cleanly. It returns how many bytes zfs
// receive was given.
func (b *Backend) runReceive(ctx context.Context, ds, name string, s resume.Stream, resumable bool) (int64, error) {
	const op = "receive"
	args := []string{"receive"}
	if resumable {
		args = append(args, "-s")
	}
	if b.feat.ReceiveNoMount {
		args = append(args, "-u")
	}
	args = append(args, b.full(ds)+"@"+name)
	cmd := exec.CommandContext(ctx, b.zfs, args...)
	var stderr tail
	cmd.Stderr = &stderr
	// A 1 MiB pipe: zfs receive reads the stream in large chunks.
	pr, stdin, err := storage.Pipe()
	if err != nil {
		return 0, storage.Wrap(err, storage.KindTemporary, op, ds, name)
	}
	cmd.Stdin = pr
	err = cmd.Start()
	pr.Close() // the child holds its own copy
	if err != nil {
		stdin.Close()
		return 0, classify(err, storage.KindUnsupported, op, ds, name, "install zfs on the target")
	}
	written, streamErr, writeErr := feed(stdin, s)
	stdin.Close()
	waitErr := cmd.Wait()
	switch {
	case streamErr != nil:
		// The stream failed: zfs receive saw a truncated stream and
		// discarded it; the stream's own error is what happened.
		return written, storage.Wrap(fmt.Errorf("the stream failed after %d bytes: %w", written, streamErr), storage.KindTemporary, op, ds, name)
	case waitErr != nil:
		ce := &cmdError{args: append([]string{b.zfs}, args...), err: waitErr, stderr: trim(stderr.String()), ctxErr: ctx.Err()}
		return written, b.receiveError(op, ds, name, ce)
	case writeErr != nil:
		return written, storage.Wrap(writeErr, storage.KindTemporary, op, ds, name)
	}
	return written, nil
}

// receiveError classifies what zfs receive said.
func (b *Backend) receiveError(op, ds, name string, ce *cmdError) error {
	switch {
	case ce.ctxErr != nil:
		return classify(ce, storage.KindTemporary, op, ds, name, "")
	case ce.noSpace():
		return &storage.Error{Kind: storage.KindNoSpace, Op: op, Dataset: ds, Snapshot: name, Err: ce}
	case ce.says("has been modified"):
		return modified(op, b.full(ds), ds, name, "zfs receive: "+ce.stderr)
	case ce.says("destination has snapshots", "must specify -F", "exists", "does not match incremental source", "most recent snapshot"):
		return storage.Errorf(storage.KindConflict, op, ds, name, "ferry never forces a receive (-F): make the target's newest snapshot the stream's base, or remove what is in the way by hand",
			"%v", ce)
	case ce.says("invalid backup stream", "incomplete stream", "checksum mismatch", "unsupported", "bad magic", "Invalid argument"):
		return storage.Errorf(storage.KindInvalid, op, ds, name, "the stream is incomplete or corrupt: send it again", "%v", ce)
	}
	return classify(ce, storage.KindInvalid, op, ds, name, "")
}

// feed copies s to w, always keeping the last holdBack bytes until s ends
// with io.EOF. streamErr is s's failure, writeErr w's.
func feed(w io.Writer, s io.Reader) (n int64, streamErr, writeErr error) {
	buf := make([]byte, 0, 1<<20+holdBack)
	chunk := make([]byte, 256<<10)
	for {
		k, err := s.Read(chunk)
		buf = append(buf, chunk[:k]...)
		if len(buf) > holdBack {
			out := len(buf) - holdBack
			m, werr := w.Write(buf[:out])
			n += int64(m)
			if werr != nil {
				return n, nil, werr
			}
			buf = append(buf[:0], buf[out:]...)
		}
		if err == io.EOF {
			m, werr := w.Write(buf)
			return n + int64(m), nil, werr
		}
		if err != nil {
			return n, err, nil
		}
	}
}

// commit records the received snapshot as ferry's: identities first, the
// marker last; a full receive's dataset becomes read-only, so that
// nothing but the next receive changes the replica.
func (b *Backend) commit(ctx context.Context, op string, req storage.ReceiveRequest, parent *zsnap) error {
	snap := b.full(req.Dataset) + "@" + req.Name
	var sets [][2]string
	if req.SourceGUID != "" {
		sets = append(sets, [2]string{propReceivedGUID, req.SourceGUID})
	}
	if parent != nil && parent.props[propReceivedGUID] != "" {
		sets = append(sets, [2]string{propParentGUID, parent.props[propReceivedGUID]})
	}
	if req.SourceDatasetGUID != "" {
		sets = append(sets, [2]string{propDatasetGUID, req.SourceDatasetGUID})
	}
	sets = append(sets, [2]string{propSnapshot, "received"})
	if req.Parent == "" {
		for _, kv := range []string{"readonly=on", propReplica + "=on"} {
			if _, err := run(ctx, b.zfs, nil, "set", kv, b.full(req.Dataset)); err != nil {
				return classify(err, storage.KindTemporary, op, req.Dataset, req.Name, "")
			}
		}
	}
	for _, kv := range sets {
		if _, err := run(ctx, b.zfs, nil, "set", kv[0]+"="+kv[1], snap); err != nil {
			return classify(err, storage.KindTemporary, op, req.Dataset, req.Name, "")
		}
	}
	if _, err := run(ctx, b.zfs, nil, "inherit", b.recvProp(req.Dataset, req.Name), b.root); err != nil {
		return classify(err, storage.KindTemporary, op, req.Dataset, req.Name, "")
	}
	return nil
}

// noSpace is the NoSpace error of a receive, after its partial is gone.
func (b *Backend) noSpace(ctx context.Context, op string, req storage.ReceiveRequest, received int64, cause error) error {
	b.settle(ctx)
	mp, _ := b.mountpoint(ctx, b.root)
	file := fmt.Sprintf("the stream of %s@%s (zfs receive does not name the file)", req.Dataset, req.Name)
	var se *storage.Error
	if errors.As(cause, &se) && se.Err != nil {
		cause = se.Err // the tool's own words, without "receive ds@name" twice
	}
	e := storage.NoSpace(op, req.Dataset, req.Name, file, req.ExpectedSize, received, mp, cause)
	if nse, ok := e.Err.(*storage.NoSpaceError); ok {
		nse.FSPath = "pool dataset " + b.root // where to free space, in ZFS's terms
	}
	return e
}

// settle waits (a few seconds at most) until the space a discarded receive
// held is free again: ZFS frees it when the transaction group syncs.
func (b *Backend) settle(ctx context.Context) {
	last := int64(-1)
	for range 20 {
		out, err := run(ctx, b.zfs, nil, "get", "-H", "-p", "-o", "value", "available", b.root)
		if err != nil {
			return
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
		if n == last {
			return
		}
		last = n
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// discard removes what an interrupted receive of ds@name left: a %recv
// clone, the snapshot if ferry did not get to record it, and the record.
// An empty name removes only a %recv clone.
func (b *Backend) discard(ctx context.Context, op, ds, name string) error {
	fds := b.full(ds)
	keepRecv := false
	if b.feat.ResumableReceive {
		recs, err := b.records(ctx, ds)
		if err != nil {
			return classify(err, storage.KindTemporary, op, ds, name, "")
		}
		switch owner := tokenOwner(recs); {
		case owner == name:
			if _, err := b.abortResumable(ctx, op, ds, name, recs); err != nil {
				return err
			}
		case owner != "":
			// A %recv clone holds the resume state of ferry's receive
			// of owner: it goes only with that partial.
			keepRecv = true
		}
	}
	if !keepRecv {
		if _, err := run(ctx, b.zfs, nil, "list", "-H", "-o", "name", fds+"/%recv"); err == nil {
			if _, err := run(ctx, b.zfs, nil, "destroy", fds+"/%recv"); err != nil {
				return classify(err, storage.KindTemporary, op, ds, name, "")
			}
		}
	}
	if name == "" {
		return nil
	}
	recs, err := b.records(ctx, ds)
	if err != nil {
		return classify(err, storage.KindTemporary, op, ds, name, "")
	}
	if _, ok := recs[name]; !ok {
		return nil
	}
	if s, _, _, err := b.find(ctx, op, ds, name); err != nil {
		return err
	} else if s != nil && !s.ferrys() {
		if err := b.destroy(ctx, op, ds, name, true); err != nil {
			return err
		}
	}
	if _, err := run(ctx, b.zfs, nil, "inherit", b.recvProp(ds, name), b.root); err != nil {
		return classify(err, storage.KindTemporary, op, ds, name, "")
	}
	return nil
}

// Partials implements storage.Backend: interrupted receives (ferry's
// records, and a %recv clone where zfs left one). Where the pool keeps
// resume state, the receive it belongs to carries the dataset's
// receive_resume_token and is resumable (resume.go); elsewhere a partial is
// only ever discarded.
func (b *Backend) Partials(ctx context.Context, dataset string) ([]storage.Partial, error) {
	const op = "list partials"
	if err := checkNames(op, dataset); err != nil {
		return nil, err
	}
	recs, err := b.records(ctx, dataset)
	if err != nil {
		return nil, classify(err, storage.KindTemporary, op, dataset, "", "")
	}
	token, owner := "", tokenOwner(recs)
	if owner != "" {
		if token, err = b.resumeToken(ctx, b.full(dataset)); err != nil {
			return nil, classify(err, storage.KindTemporary, op, dataset, "", "")
		}
	}
	var out []storage.Partial
	for _, name := range slices.Sorted(maps.Keys(recs)) {
		rec := recs[name]
		p := storage.Partial{Dataset: dataset, Name: name, ID: b.root + "#" + b.recvProp(dataset, name),
			Reason:     "an interrupted zfs receive (this pool keeps no resume token: the step restarts from byte 0)",
			SourceGUID: rec.SourceGUID, ParentGUID: rec.ParentGUID}
		switch {
		case name == owner && token != "":
			p.ResumeToken = token
			p.Reason = "an interrupted zfs receive -s: resumable where it stopped (receive_resume_token " + short(token) + ")"
		case b.feat.ResumableReceive:
			p.Reason = "an interrupted zfs receive that left no resume token: the step restarts from byte 0"
		}
		out = append(out, p)
	}
	if token != "" {
		// A %recv clone is then that receive's resume state, not a leftover.
		return out, nil
	}
	if _, err := run(ctx, b.zfs, nil, "list", "-H", "-o", "name", b.full(dataset)+"/%recv"); err == nil {
		out = append(out, storage.Partial{Dataset: dataset, ID: b.full(dataset) + "/%recv", Reason: "a %recv clone zfs receive left"})
	}
	return out, nil
}

// DiscardPartial implements storage.Backend.
func (b *Backend) DiscardPartial(ctx context.Context, p storage.Partial) error {
	const op = "discard partial"
	if err := checkNames(op, p.Dataset); err != nil {
		return err
	}
	if p.Name != "" {
		if err := checkNames(op, p.Dataset, p.Name); err != nil {
			return err
		}
	}
	unlock, err := b.locks.Lock(op, p.Dataset)
	if err != nil {
		return err
	}
	defer unlock()
	return b.discard(ctx, op, p.Dataset, p.Name)
}

// Anomalies implements storage.Backend. ZFS snapshots cannot change, so
// nothing is ever "modified"; snapshots ferry did not make are normal on
// ZFS (zfs-auto-snapshot, sanoid) and only reported when a receive runs
// into them (Conflict naming them).
func (b *Backend) Anomalies(ctx context.Context, dataset string) ([]storage.Anomaly, error) {
	if err := checkNames("list anomalies", dataset); err != nil {
		return nil, err
	}
	return nil, nil
}

// Verify implements storage.Backend: the received snapshot carries the
// identities the request names, and (from a ZFS source) the same guid.
func (b *Backend) Verify(ctx context.Context, req storage.VerifyRequest) (storage.Snapshot, error) {
	const op = "verify"
	if err := checkNames(op, req.Dataset, req.Name); err != nil {
		return storage.Snapshot{}, err
	}
	s, _, _, err := b.find(ctx, op, req.Dataset, req.Name)
	if err != nil {
		return storage.Snapshot{}, err
	}
	if s == nil || !s.ferrys() {
		return storage.Snapshot{}, notFound(op, req.Dataset, req.Name)
	}
	snap := s.toSnapshot(req.Dataset)
	const fix = "the target's snapshot is not the one sent: destroy it on the target and run the job again"
	if snap.ReceivedGUID != req.SourceGUID {
		return snap, storage.Errorf(storage.KindConflict, op, req.Dataset, req.Name, fix,
			"received from %s, not %s", orNone(snap.ReceivedGUID), orNone(req.SourceGUID))
	}
	if req.ParentSourceGUID != "" && snap.ParentGUID != req.ParentSourceGUID {
		return snap, storage.Errorf(storage.KindConflict, op, req.Dataset, req.Name, fix,
			"received on base %s, not %s", orNone(snap.ParentGUID), req.ParentSourceGUID)
	}
	if m := zfsIdent.FindStringSubmatch(req.SourceGUID); m != nil {
		if guid, err := strconv.ParseUint(m[1], 10, 64); err == nil && guid != s.guid {
			return snap, storage.Errorf(storage.KindConflict, op, req.Dataset, req.Name, fix,
				"its zfs guid is %d, the source snapshot's %d", s.guid, guid)
		}
	}
	return snap, nil
}

// zfsIdent is a snapshot identity this backend gives (guid-createtxg).
var zfsIdent = regexp.MustCompile(`^([0-9]+)-[0-9]+$`)

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
