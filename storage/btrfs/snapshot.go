package btrfs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/ferry-nas/ferry/logging"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/metafile"
)

// metaFile is ferry's record of a snapshot, inside its container beside
// the subvolume. A snapshot is complete only when the record exists, its
// subvolume is read-only with the recorded uuid and, for a received one,
// still carries the recorded received_uuid.
const metaFile = ".meta.json"

const (
	kindLocal    = "local"
	kindReceived = "received"
)

type meta struct {
	Version int    `json:"version"`
	Dataset string `json:"dataset"`
	Name    string `json:"name"`
	// Kind is "local" (made here by CreateSnapshot) or "received".
	Kind string `json:"kind"`
	// UUID is the subvolume's own uuid (the snapshot's GUID).
	UUID string `json:"uuid"`
	// ReceivedUUID is the source snapshot's uuid (received only).
	ReceivedUUID string `json:"received_uuid,omitempty"`
	// ParentGUID is the source uuid of the incremental base a received
	// snapshot was applied on; TargetParent names that base here and
	// ParentUUID is btrfs's parent_uuid (the live subvolume of a local
	// snapshot, the base's uuid here for a received incremental).
	ParentGUID   string `json:"parent_guid,omitempty"`
	TargetParent string `json:"target_parent,omitempty"`
	ParentUUID   string `json:"parent_uuid,omitempty"`
	// Ctransid is the subvolume's ctransid when it was committed: any
	// change to its content later moves it (Verify, Send check it).
	Ctransid uint64 `json:"ctransid"`
	// Stransid is, for a received snapshot, the source's ctransid that
	// btrfs receive stored.
	Stransid  uint64    `json:"stransid,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// DatasetGUID is, for a received snapshot, the identity of the source's
	// dataset as the receive request named it (a local snapshot's dataset
	// is its ParentUUID, the live subvolume).
	DatasetGUID string `json:"dataset_guid,omitempty"`
	// Mode, StreamBytes and StreamDigest ("blake3:<hex>" or
	// "sha256:<hex>") describe the receive; StreamSHA256 is set too for a
	// SHA-256 stream (every receive before BLAKE3 has only it).
	Mode         string `json:"mode,omitempty"`
	StreamBytes  int64  `json:"stream_bytes,omitempty"`
	StreamDigest string `json:"stream_digest,omitempty"`
	StreamSHA256 string `json:"stream_sha256,omitempty"`
}

// snapState is what is on disk for one snapshot name.
type snapState struct {
	name string
	// exists: the container (or something) is there.
	exists bool
	meta   *meta
	sv     *subvol
	// complete, else class says what it is and reason why.
	complete bool
	class    class
	reason   string
}

// class sorts what is not a complete snapshot: ferry's own interrupted
// work (discardable), a snapshot modified after commit, something foreign.
type class int

const (
	classPartial class = iota
	classModified
	classForeign
)

// anomaly describes a modified or foreign state for greet and errors.
func (b *Backend) anomaly(ds string, st *snapState) storage.Anomaly {
	kind := storage.Modified
	if st.class == classForeign {
		kind = storage.Foreign
	}
	a := storage.Anomaly{Dataset: ds, Kind: kind, Name: st.name, ID: b.rel(b.container(ds, st.name)), What: st.reason}
	if kind == storage.Modified {
		// Metadata first, as destroy does, then the subvolume, then its container.
		c := b.container(ds, st.name)
		a.Remove = storage.ShellCommand("rm", "-f", b.metaPath(ds, st.name)) + " && " +
			storage.ShellCommand("btrfs", "subvolume", "delete", b.subvolPath(ds, st.name)) + " && " + storage.ShellCommand("rmdir", c)
		switch {
		case st.meta != nil && st.meta.Kind == kindReceived:
			a.Origin = storage.OriginReceived
		case st.meta != nil && st.meta.Kind == kindLocal:
			a.Origin = storage.OriginLocal
		}
	}
	return a
}

func (st *snapState) snapshot(ds string) storage.Snapshot {
	out := storage.Snapshot{
		Dataset: ds, Name: st.name, GUID: st.sv.UUID, ReceivedGUID: st.sv.ReceivedUUID,
		ParentGUID: st.meta.ParentGUID, CreatedAt: st.meta.CreatedAt, ReadOnly: st.sv.ReadOnly,
		Seq: st.seq(), DatasetGUID: st.meta.DatasetGUID,
	}
	if st.meta.Kind == kindLocal {
		out.DatasetGUID = st.sv.ParentUUID
	}
	return out
}

// seq orders snapshots by the filesystem's transaction ids, which only
// grow, never by a clock: a local snapshot by the transaction that created
// it, a received one by the one in which its receive finished (the commit).
func (st *snapState) seq() uint64 {
	if st.meta.Kind == kindReceived && st.sv.Rtransid != 0 {
		return st.sv.Rtransid
	}
	return st.sv.Otransid
}

// compareStates orders complete snapshots oldest first: by seq, then by
// subvolume id (allocated in increasing order) for two in one transaction.
func compareStates(a, c *snapState) int {
	if d := cmp.Compare(a.seq(), c.seq()); d != 0 {
		return d
	}
	return cmp.Compare(a.sv.ID, c.sv.ID)
}

// inspect looks at .ferry/snapshots/<ds>/<name>. Errors are for things that
// could not be looked at; anything odd found is a reason.
func (b *Backend) inspect(ctx context.Context, ds, name string) (*snapState, error) {
	st := &snapState{name: name}
	c := b.container(ds, name)
	fi, err := os.Lstat(c)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	st.exists = true
	if !fi.IsDir() {
		st.class, st.reason = classForeign, "a file in place of a snapshot directory (not ferry's layout)"
		return st, nil
	}
	if ok, err := isSubvolume(c); err != nil {
		return nil, err
	} else if ok {
		sv, err := b.show(ctx, c)
		if err != nil {
			return nil, err
		}
		st.class, st.reason = classForeign, "a subvolume in place of a snapshot directory (not ferry's layout): "+describe(sv)
		return st, nil
	}
	var m meta
	switch found, err := metafile.ReadJSON(b.metaPath(ds, name), &m); {
	case errors.Is(err, metafile.ErrCorrupt):
		st.class, st.reason = classModified, fmt.Sprintf("its %s is unreadable (%v)", metaFile, err)
		return st, nil
	case err != nil:
		return nil, err
	case found:
		st.meta = &m
	}
	svPath := b.subvolPath(ds, name)
	if ok, err := isSubvolume(svPath); err == nil && ok {
		if st.sv, err = b.show(ctx, svPath); err != nil {
			return nil, err
		}
	} else if err == nil {
		st.class, st.reason = classForeign, fmt.Sprintf("%s is not a subvolume (not ferry's layout)", name)
		return st, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	switch m, sv := st.meta, st.sv; {
	case m == nil && sv == nil:
		st.reason = "empty snapshot directory (interrupted create or destroy)"
	case m == nil:
		// CreateSnapshot writes the metadata right after `btrfs subvolume
		// snapshot -r` of the live dataset: anything else is not ferry's.
		if live, err := b.show(ctx, b.live(ds)); err == nil && sv.ReadOnly && sv.ReceivedUUID == "" && sv.ParentUUID == live.UUID {
			st.reason = "snapshot without ferry's metadata (interrupted create): " + describe(sv)
		} else {
			st.class, st.reason = classForeign, "a subvolume ferry has no record of: "+describe(sv)
		}
	case sv == nil:
		st.reason = "metadata without its subvolume (interrupted destroy)"
	case m.Name != name:
		st.class, st.reason = classForeign, fmt.Sprintf("its metadata names %q (copied or renamed by hand)", m.Name)
	case sv.UUID != m.UUID:
		st.class, st.reason = classForeign, fmt.Sprintf("subvolume uuid %s, ferry recorded %s: replaced behind ferry's back", sv.UUID, m.UUID)
	default:
		if what := modification(m, sv); what != "" {
			st.class, st.reason = classModified, what
		} else {
			st.complete = true
		}
	}
	return st, nil
}

// modification says how a committed snapshot's subvolume differs from
// what ferry recorded at commit, or "" when it does not. The ctransid is
// the transaction of the last change to the subvolume's content: every
// write, create, remove, rename, chmod, xattr or utimes moves it, while
// clearing and setting the read-only flag alone or a balance do not
// (TestCtransidTracksEveryChange); the generation is not compared, a
// balance moves it.
func modification(m *meta, sv *subvol) string {
	var what []string
	if !sv.ReadOnly {
		what = append(what, "it was made writable")
	}
	if m.Kind == kindReceived {
		switch sv.ReceivedUUID {
		case m.ReceivedUUID:
		case "":
			what = append(what, "its received_uuid was cleared (made writable with btrfs property set -f?)")
		default:
			what = append(what, fmt.Sprintf("its received_uuid is %s, ferry received it from %s", sv.ReceivedUUID, m.ReceivedUUID))
		}
		if sv.Stransid != m.Stransid {
			what = append(what, fmt.Sprintf("its stransid is %d, recorded %d (received again or altered)", sv.Stransid, m.Stransid))
		}
	}
	if sv.Ctransid != m.Ctransid {
		what = append(what, fmt.Sprintf("its content changed after ferry committed it (ctransid %d, recorded at commit %d)", sv.Ctransid, m.Ctransid))
	}
	return strings.Join(what, "; ")
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// describe says in words what state a subvolume is in.
func describe(sv *subvol) string {
	var parts []string
	if sv.ReadOnly {
		parts = append(parts, "read-only")
	} else {
		parts = append(parts, "writable")
	}
	if sv.ReceivedUUID == "" {
		parts = append(parts, "no received_uuid")
	} else {
		parts = append(parts, "received_uuid "+sv.ReceivedUUID)
	}
	return strings.Join(parts, ", ")
}

// complete returns the complete snapshot name, or a NotFound error.
func (b *Backend) complete(ctx context.Context, op, ds, name string) (*snapState, error) {
	st, err := b.inspect(ctx, ds, name)
	if err != nil {
		return nil, classify(err, storage.KindTemporary, op, ds, name)
	}
	if !st.complete {
		if st.exists && st.class != classPartial {
			return nil, b.anomaly(ds, st).Err(op)
		}
		why := "does not exist"
		if st.exists {
			why = "is not a complete snapshot: " + st.reason
		}
		return nil, storage.Errorf(storage.KindNotFound, op, ds, name, "", "snapshot %q %s", name, why)
	}
	return st, nil
}

// CreateSnapshot implements storage.Backend with `btrfs subvolume snapshot
// -r` of the live subvolume into .ferry/snapshots/<ds>/<name>/<name>; the
// metadata written last makes it complete.
func (b *Backend) CreateSnapshot(ctx context.Context, ds, name string) (storage.Snapshot, error) {
	const op = "create snapshot"
	unlock, err := b.locks.LockSnapshot(op, ds, name)
	if err != nil {
		return storage.Snapshot{}, err
	}
	defer unlock()

	live := b.live(ds)
	if _, err := os.Lstat(live); errors.Is(err, fs.ErrNotExist) {
		return storage.Snapshot{}, storage.Errorf(storage.KindNotFound, op, ds, name, "create the dataset with `btrfs subvolume create` or fix the job's dataset", "dataset %s does not exist", live)
	} else if err != nil {
		return storage.Snapshot{}, classify(err, storage.KindTemporary, op, ds, name)
	}
	if err := b.refuseView(op, ds); err != nil {
		return storage.Snapshot{}, err
	}
	if real, err := filepath.EvalSymlinks(live); err != nil || real != live {
		return storage.Snapshot{}, storage.Errorf(storage.KindInvalid, op, ds, name, "datasets must be real subvolumes inside the root, not reached through symlinks", "dataset %s resolves to %s", live, real)
	}
	if ok, err := isSubvolume(live); err != nil {
		return storage.Snapshot{}, classify(err, storage.KindTemporary, op, ds, name)
	} else if !ok {
		return storage.Snapshot{}, storage.Errorf(storage.KindInvalid, op, ds, name, "make the dataset a subvolume (btrfs subvolume create, then move the data in)", "dataset %s is a plain directory, not a btrfs subvolume", live)
	}

	st, err := b.inspect(ctx, ds, name)
	if err != nil {
		return storage.Snapshot{}, classify(err, storage.KindTemporary, op, ds, name)
	}
	if st.complete {
		return st.snapshot(ds), nil
	}
	if st.exists && st.class != classPartial {
		return storage.Snapshot{}, b.anomaly(ds, st).Err(op)
	}
	if st.exists {
		b.log.Warn("removing an incomplete snapshot before taking it again", logging.Snapshot(name), zap.String("dataset", ds), zap.String("reason", st.reason))
		if err := b.removeTree(ctx, b.container(ds, name)); err != nil {
			return storage.Snapshot{}, classify(err, storage.KindTemporary, op, ds, name)
		}
	}
	if err := b.lay.MkdirAll(b.container(ds, name)); err != nil {
		return storage.Snapshot{}, classify(err, storage.KindTemporary, op, ds, name)
	}
	fail := func(err error) (storage.Snapshot, error) {
		err = classify(err, storage.KindTemporary, op, ds, name)
		if rerr := b.removeTree(context.WithoutCancel(ctx), b.container(ds, name)); rerr != nil {
			b.log.Warn("cleaning up a failed snapshot", zap.Error(rerr))
		}
		removeIfEmpty(b.snapDir(ds))
		return storage.Snapshot{}, err
	}
	if _, err := b.run(ctx, "subvolume", "snapshot", "-r", live, b.subvolPath(ds, name)); err != nil {
		return fail(err)
	}
	if err := syncFS(b.container(ds, name)); err != nil {
		return fail(err)
	}
	sv, err := b.show(ctx, b.subvolPath(ds, name))
	if err != nil {
		return fail(err)
	}
	m := &meta{Version: 1, Dataset: ds, Name: name, Kind: kindLocal, UUID: sv.UUID, ParentUUID: sv.ParentUUID,
		Ctransid: sv.Ctransid, CreatedAt: sv.Created}
	if err := metafile.WriteJSON(b.metaPath(ds, name), m); err != nil {
		return fail(err)
	}
	st = &snapState{name: name, exists: true, meta: m, sv: sv, complete: true}
	return st.snapshot(ds), nil
}

// ListSnapshots implements storage.Backend: the complete snapshots, oldest
// first by transaction id (compareStates).
func (b *Backend) ListSnapshots(ctx context.Context, ds string) ([]storage.Snapshot, error) {
	const op = "list snapshots"
	if err := storage.CheckDataset(op, ds); err != nil {
		return nil, err
	}
	states, err := b.snapStates(ctx, ds)
	if err != nil {
		return nil, classify(err, storage.KindTemporary, op, ds, "")
	}
	var done []*snapState
	for _, st := range states {
		if st.complete {
			done = append(done, st)
		}
	}
	slices.SortFunc(done, compareStates)
	out := make([]storage.Snapshot, 0, len(done))
	for _, st := range done {
		out = append(out, st.snapshot(ds))
	}
	return out, nil
}

// snapStates inspects every entry of .ferry/snapshots/<ds>.
func (b *Backend) snapStates(ctx context.Context, ds string) ([]*snapState, error) {
	entries, err := os.ReadDir(b.snapDir(ds))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*snapState
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		st, err := b.inspect(ctx, ds, e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// DestroySnapshot implements storage.Backend: the metadata goes first (the
// snapshot is then no longer complete), then the subvolume, then its
// directory.
func (b *Backend) DestroySnapshot(ctx context.Context, ds, name string) error {
	const op = "destroy snapshot"
	unlock, err := b.locks.LockSnapshot(op, ds, name)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := b.inspect(ctx, ds, name)
	if err != nil {
		return classify(err, storage.KindTemporary, op, ds, name)
	}
	if st.exists && !st.complete && st.class == classForeign {
		return b.anomaly(ds, st).Err(op)
	}
	// The view lets go of the snapshot before the subvolume goes, so no
	// entry ever dangles.
	if err := b.syncView(ctx, ds, name); err != nil {
		return classify(err, storage.KindTemporary, op, ds, name)
	}
	return classify(b.destroy(ctx, ds, name), storage.KindTemporary, op, ds, name)
}

func (b *Backend) destroy(ctx context.Context, ds, name string) error {
	c := b.container(ds, name)
	if _, err := os.Lstat(c); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := os.Remove(b.metaPath(ds, name)); err == nil {
		if err := metafile.SyncDir(c); err != nil {
			return err
		}
	} else if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTDIR) {
		return err
	}
	if err := b.removeTree(ctx, c); err != nil {
		return err
	}
	removeIfEmpty(b.snapDir(ds))
	return nil
}

// ContentDigest implements storage.Backend with storage.TreeDigest over the
// snapshot's read-only subvolume.
func (b *Backend) ContentDigest(ctx context.Context, ds, name string) (string, error) {
	const op = "content digest"
	if err := storage.CheckDataset(op, ds); err != nil {
		return "", err
	}
	if err := storage.CheckSnapshotName(op, ds, name); err != nil {
		return "", err
	}
	if _, err := b.complete(ctx, op, ds, name); err != nil {
		return "", err
	}
	d, err := storage.TreeDigest(b.subvolPath(ds, name), nil)
	if err != nil {
		return "", classify(err, storage.KindTemporary, op, ds, name)
	}
	return d, nil
}

// Verify implements storage.Backend: the snapshot is complete (which
// includes read-only and unmodified since ferry committed it: its ctransid
// and the receive's stransid are still the recorded ones), received from
// req.SourceGUID (its received_uuid) and applied on the base
// req.ParentSourceGUID names.
func (b *Backend) Verify(ctx context.Context, req storage.VerifyRequest) (storage.Snapshot, error) {
	const op = "verify"
	ds, name := req.Dataset, req.Name
	if err := storage.CheckDataset(op, ds); err != nil {
		return storage.Snapshot{}, err
	}
	if err := storage.CheckSnapshotName(op, ds, name); err != nil {
		return storage.Snapshot{}, err
	}
	st, err := b.inspect(ctx, ds, name)
	if err != nil {
		return storage.Snapshot{}, classify(err, storage.KindTemporary, op, ds, name)
	}
	const fix = "discard the received snapshot and send it again"
	conflict := func(format string, args ...any) (storage.Snapshot, error) {
		return storage.Snapshot{}, storage.Errorf(storage.KindConflict, op, ds, name, fix, format, args...)
	}
	switch {
	case st.exists && st.class != classPartial:
		a := b.anomaly(ds, st)
		return storage.Snapshot{}, storage.Errorf(storage.KindConflict, op, ds, name, a.Fix(), "%s: %s", a.Kind, a.What)
	case !st.exists || (st.meta == nil && st.sv == nil):
		return storage.Snapshot{}, storage.Errorf(storage.KindNotFound, op, ds, name, "", "snapshot %q does not exist", name)
	case st.meta == nil:
		return storage.Snapshot{}, storage.Errorf(storage.KindNotFound, op, ds, name, "", "snapshot %q is not complete: %s", name, st.reason)
	case !st.complete:
		return conflict("%s", st.reason)
	}
	m, sv := st.meta, st.sv
	switch {
	case sv.ReceivedUUID != req.SourceGUID:
		return conflict("received_uuid %q, expected %q", sv.ReceivedUUID, req.SourceGUID)
	case req.ParentSourceGUID != "" && req.ParentSourceGUID != m.ParentGUID:
		return conflict("applied on base %q, expected %q", m.ParentGUID, req.ParentSourceGUID)
	}
	return st.snapshot(ds), nil
}
