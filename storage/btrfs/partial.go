package btrfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/storage"
)

// stagingBases lists the receives the dataset's staging area holds
// entries of, each once, in directory order.
func (b *Backend) stagingBases(ds string) ([]string, error) {
	entries, err := os.ReadDir(b.stagingDir(ds))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var bases []string
	for _, e := range entries {
		if n := stagingBase(e.Name()); n != "" && !slices.Contains(bases, n) {
			bases = append(bases, n)
		}
	}
	return bases, nil
}

// stagingBase is the receive a staging entry belongs to: "<n>",
// "<n>.json" (its receive record), "<n>.spool", "<n>.spool.json" and
// their ".tmp" files are all n's.
func stagingBase(entry string) string {
	for _, suf := range []string{".tmp", ".json", ".spool"} {
		entry = strings.TrimSuffix(entry, suf)
	}
	return entry
}

// Partials implements storage.Backend. It reports, for the dataset, only
// what ferry's own interrupted work left (Anomalies reports the rest):
//   - every receive in .ferry/staging/<ds>/ that ferry started (its receive
//     record or spool is there): a spool (staged mode; with Resume set when
//     a checkpoint is readable) and/or the staging directory of an
//     interrupted or unchecked btrfs receive;
//   - every entry of .ferry/snapshots/<ds>/ that is ferry's unfinished
//     create or destroy: an empty directory, a read-only snapshot of the
//     live dataset without metadata, metadata without its subvolume.
func (b *Backend) Partials(ctx context.Context, ds string) ([]storage.Partial, error) {
	const op = "list partials"
	if err := storage.CheckDataset(op, ds); err != nil {
		return nil, err
	}
	var out []storage.Partial
	bases, err := b.stagingBases(ds)
	if err != nil {
		return nil, classify(err, storage.KindTemporary, op, ds, "")
	}
	for _, n := range bases {
		p, foreign, err := b.stagingPartial(ctx, ds, n)
		if err != nil {
			return nil, classify(err, storage.KindTemporary, op, ds, n)
		}
		if foreign == nil {
			out = append(out, p)
		}
	}
	states, err := b.snapStates(ctx, ds)
	if err != nil {
		return nil, classify(err, storage.KindTemporary, op, ds, "")
	}
	for _, st := range states {
		if st.complete || st.class != classPartial {
			continue
		}
		p := storage.Partial{Dataset: ds, Name: st.name, ID: b.rel(b.container(ds, st.name)), Reason: st.reason}
		if st.meta != nil {
			p.SourceGUID, p.ParentGUID = st.meta.ReceivedUUID, st.meta.ParentGUID
		}
		out = append(out, p)
	}
	return out, nil
}

// stagingPartial describes what staging holds for receive n: a partial
// when ferry started that receive (its record or spool is there), else a
// foreign item.
func (b *Backend) stagingPartial(ctx context.Context, ds, n string) (storage.Partial, *storage.Anomaly, error) {
	p := storage.Partial{Dataset: ds, Name: n, ID: b.rel(b.stage(ds, n))}
	var reasons []string

	rec := loadReceiveRecord(b.recordPath(ds, n), ds, n)
	if rec != nil {
		p.SourceGUID = rec.SourceGUID
	}
	state, stateErr := loadSpoolState(b.spoolStatePath(ds, n))
	spool, spoolErr := os.Stat(b.spoolPath(ds, n))
	ours := rec != nil || spoolErr == nil || state != nil || stateErr != nil
	switch {
	case spoolErr == nil && stateErr == nil && state != nil:
		p.SourceGUID, p.ParentGUID = state.SourceGUID, state.Stream.CloneUUID
		if spool.Size() < state.Position.Offset {
			reasons = append(reasons, fmt.Sprintf("spool is %d bytes, shorter than its checkpoint at %d: not resumable", spool.Size(), state.Position.Offset))
			break
		}
		pos := state.Position
		p.Resume = &pos
		if state.Complete {
			reasons = append(reasons, fmt.Sprintf("stream fully spooled (%d bytes) but not applied: resumable at its end", pos.Offset))
		} else {
			reasons = append(reasons, fmt.Sprintf("interrupted staged receive: %d bytes spooled and durable, resumable at stream offset %d", pos.Offset, pos.Offset))
		}
	case spoolErr == nil && stateErr != nil:
		reasons = append(reasons, fmt.Sprintf("spool with unreadable resume state (%v): not resumable", stateErr))
	case spoolErr == nil:
		reasons = append(reasons, "spool interrupted before its first checkpoint: not resumable")
	case state != nil || stateErr != nil:
		reasons = append(reasons, "resume state without its spool: not resumable")
	}

	dir := b.stage(ds, n)
	if fi, err := os.Lstat(dir); err == nil {
		what, err := b.describeStage(ctx, dir, n, fi)
		if err != nil {
			return p, nil, err
		}
		if !ours {
			a := &storage.Anomaly{Dataset: ds, Kind: storage.Foreign, Name: n, ID: p.ID,
				What: "in the staging area without a record of a receive ferry started: " + strings.TrimPrefix(what, "interrupted btrfs receive: ")}
			return p, a, nil
		}
		reasons = append(reasons, what)
	}
	if len(reasons) == 0 {
		reasons = append(reasons, "receive record of a receive that wrote nothing yet")
	}
	p.Reason = strings.Join(reasons, "; ")
	return p, nil, nil
}

// describeStage says what a staging entry holds.
func (b *Backend) describeStage(ctx context.Context, dir, n string, fi fs.FileInfo) (string, error) {
	if !fi.IsDir() {
		return "a file in place of a receive directory", nil
	}
	if ok, err := isSubvolume(dir); err != nil {
		return "", err
	} else if ok {
		sv, err := b.show(ctx, dir)
		if err != nil {
			return "", err
		}
		return "a subvolume in place of a receive directory (" + describe(sv) + ")", nil
	}
	sub := filepath.Join(dir, n)
	ok, err := isSubvolume(sub)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "interrupted receive before btrfs created its subvolume", nil
	case err != nil:
		return "", err
	case !ok:
		return "receive directory without a subvolume", nil
	}
	sv, err := b.show(ctx, sub)
	if err != nil {
		return "", err
	}
	if !sv.ReadOnly || sv.ReceivedUUID == "" {
		return "interrupted btrfs receive: subvolume " + n + " is " + describe(sv), nil
	}
	return "btrfs receive finished (" + describe(sv) + ") but ferry never checked and committed it", nil
}

// DiscardPartial implements storage.Backend. It only removes what Partials
// reports: a receive's staging entries, or an incomplete snapshot directory;
// a complete snapshot is never touched.
func (b *Backend) DiscardPartial(ctx context.Context, p storage.Partial) error {
	const op = "discard partial"
	if err := storage.CheckDataset(op, p.Dataset); err != nil {
		return err
	}
	abs := filepath.Join(b.root, filepath.FromSlash(p.ID))
	parent, n := filepath.Dir(abs), filepath.Base(abs)
	if filepath.Clean(abs) != abs || n == "." || n == ".." || strings.HasPrefix(n, ".") || filepath.IsAbs(filepath.FromSlash(p.ID)) {
		return storage.Errorf(storage.KindInvalid, op, p.Dataset, p.Name, "", "%q is not a partial of this backend", p.ID)
	}
	unlock, err := b.locks.Lock(op, p.Dataset)
	if err != nil {
		return err
	}
	defer unlock()
	switch parent {
	case b.stagingDir(p.Dataset):
		_, foreign, ferr := b.stagingPartial(ctx, p.Dataset, n)
		if ferr != nil {
			return classify(ferr, storage.KindTemporary, op, p.Dataset, n)
		}
		if foreign != nil {
			return foreign.Err(op)
		}
		err = b.discardStaging(ctx, p.Dataset, n)
	case b.snapDir(p.Dataset):
		st, ierr := b.inspect(ctx, p.Dataset, n)
		if ierr != nil {
			return classify(ierr, storage.KindTemporary, op, p.Dataset, n)
		}
		if st.complete {
			return storage.Errorf(storage.KindConflict, op, p.Dataset, n, "use DestroySnapshot for complete snapshots", "%q is a complete snapshot", n)
		}
		if st.class != classPartial {
			return b.anomaly(p.Dataset, st).Err(op)
		}
		b.log.Info("discarding an incomplete snapshot", zap.String("dataset", p.Dataset), zap.String("snapshot", n), zap.String("reason", st.reason))
		err = b.removeTree(ctx, b.container(p.Dataset, n))
		removeIfEmpty(b.snapDir(p.Dataset))
	default:
		return storage.Errorf(storage.KindInvalid, op, p.Dataset, p.Name, "", "%q is not a partial of dataset %q", p.ID, p.Dataset)
	}
	return classify(err, storage.KindTemporary, op, p.Dataset, n)
}

// discardStaging removes everything staging holds for receive n: its
// directory (subvolume included), spool and resume state.
func (b *Backend) discardStaging(ctx context.Context, ds, n string) error {
	var errs []error
	for _, p := range []string{b.stage(ds, n), b.spoolPath(ds, n), b.spoolStatePath(ds, n), b.spoolStatePath(ds, n) + ".tmp", b.recordPath(ds, n), b.recordPath(ds, n) + ".tmp"} {
		if err := b.removeTree(ctx, p); err != nil {
			errs = append(errs, err)
		}
	}
	removeIfEmpty(b.stagingDir(ds))
	return errors.Join(errs...)
}
