// Cursor bookmarks (OpenZFS pools with feature@bookmarks; zfs-fuse has
// none): the job's cursor is also <dataset>#ferry_cursor_<job>, which an
// incremental can be sent from after its snapshot is gone.

package zfs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ferry-nas/ferry/storage"
)

// bookmarkPrefix + escaped mark, on a dataset: which snapshot the mark's
// bookmark stands for (a bookmarkRecord as JSON). Written after the
// bookmark is made and removed before it is destroyed, so a record always
// names the snapshot its bookmark was made from.
const bookmarkPrefix = "ferry:bookmark:"

// cursorKind is the kind of mark (cursor.<job>) that gets a bookmark: the
// source's position, the base the next incremental is sent from.
const cursorKind = "cursor"

type bookmarkRecord struct {
	Snapshot    string `json:"snapshot"`
	DatasetGUID string `json:"dataset_guid,omitempty"`
}

func bookmarkOf(fds, mark string) string { return fds + "#" + markTag(mark) }

// updateBookmark makes the cursor mark's bookmark stand for snapshot:
// destroy the old one and bookmark the snapshot (bookmarks cannot be
// renamed on older OpenZFS, and the name is fixed). Between the two there
// is no bookmark, which is safe: the held snapshot is the cursor.
func (b *Backend) updateBookmark(ctx context.Context, dataset, mark, snapshot string) error {
	if !b.feat.Bookmarks || !strings.HasPrefix(mark, cursorKind+".") {
		return nil
	}
	fds := b.full(dataset)
	bm, snap := bookmarkOf(fds, mark), fds+"@"+snapshot
	prop := bookmarkPrefix + escapeProp(mark)
	recs, err := b.localUserProps(ctx, fds, bookmarkPrefix)
	if err != nil {
		return err
	}
	var rec bookmarkRecord
	if v, ok := recs[escapeProp(mark)]; ok && json.Unmarshal([]byte(v), &rec) == nil && rec.Snapshot == snapshot {
		return nil // done before (a retried mark)
	}
	if _, err := run(ctx, b.zfs, nil, "inherit", prop, fds); err != nil {
		return err
	}
	if _, err := run(ctx, b.zfs, nil, "destroy", bm); err != nil {
		var ce *cmdError
		if !errors.As(err, &ce) || !ce.notFound() {
			return err
		}
	}
	if _, err := run(ctx, b.zfs, nil, "bookmark", snap, bm); err != nil {
		return err
	}
	s, _, _, err := b.find(ctx, "set mark", dataset, snapshot)
	if err != nil {
		return err
	}
	rec = bookmarkRecord{Snapshot: snapshot}
	if s != nil {
		rec.DatasetGUID = s.props[propDatasetGUID]
	}
	js, _ := json.Marshal(rec)
	_, err = run(ctx, b.zfs, nil, "set", prop+"="+string(js), fds)
	return err
}

// zbookmark is a cursor bookmark whose snapshot is gone.
type zbookmark struct {
	name string // the ZFS name, dataset#tag
	rec  bookmarkRecord
	zident
}

// orphanBookmarks returns the cursor bookmarks of dataset that stand for a
// snapshot no longer there, by that snapshot's name.
func (b *Backend) orphanBookmarks(ctx context.Context, dataset string, snaps []zsnap) map[string]zbookmark {
	if !b.feat.Bookmarks {
		return nil
	}
	fds := b.full(dataset)
	recs, err := b.localUserProps(ctx, fds, bookmarkPrefix)
	if err != nil || len(recs) == 0 {
		return nil
	}
	out := map[string]zbookmark{}
	for k, v := range recs {
		mark, ok := unescapeProp(k)
		var rec bookmarkRecord
		if !ok || json.Unmarshal([]byte(v), &rec) != nil || rec.Snapshot == "" ||
			slices.ContainsFunc(snaps, func(s zsnap) bool { return s.name == rec.Snapshot }) {
			continue
		}
		bm := zbookmark{name: bookmarkOf(fds, mark), rec: rec}
		rows, err := b.getProps(ctx, nil, zidentProps, bm.name)
		if err != nil {
			continue // no bookmark: nothing to send from
		}
		for _, r := range rows {
			bm.set(r.prop, r.value)
		}
		if bm.guid != 0 && bm.createtxg != 0 {
			out[rec.Snapshot] = bm
		}
	}
	return out
}

// withCursorBookmarks adds to a source's list the snapshots that are gone
// but whose cursor bookmark is there, under the snapshot's name and
// identity (a bookmark has its snapshot's guid and createtxg): the planner
// can still choose one as an incremental base, and sendArgs sends from the
// bookmark. Only a base: nothing can be sent from it in full, digested or
// received onto.
func (b *Backend) withCursorBookmarks(ctx context.Context, dataset string, snaps []zsnap, out []storage.Snapshot) []storage.Snapshot {
	bms := b.orphanBookmarks(ctx, dataset, snaps)
	if len(bms) == 0 {
		return out
	}
	for name, bm := range bms {
		out = append(out, storage.Snapshot{Dataset: dataset, Name: name, GUID: fmt.Sprintf("%d-%d", bm.guid, bm.createtxg),
			CreatedAt: bm.creation, ReadOnly: true, Seq: bm.createtxg, DatasetGUID: bm.rec.DatasetGUID})
	}
	slices.SortStableFunc(out, func(a, b storage.Snapshot) int { return cmp.Compare(a.Seq, b.Seq) })
	return out
}

// cursorBookmark is the bookmark standing for the gone snapshot from, when
// it is older than the snapshot being sent (createtxg below toTxg).
func (b *Backend) cursorBookmark(ctx context.Context, dataset, from string, toTxg uint64) (string, bool) {
	snaps, _, err := b.snapshots(ctx, b.full(dataset))
	if err != nil {
		return "", false
	}
	bm, ok := b.orphanBookmarks(ctx, dataset, snaps)[from]
	if !ok || bm.createtxg >= toTxg {
		return "", false
	}
	return bm.name, true
}

// notSendable is the NotFound of sending name, which is not a snapshot of
// dataset: when only its cursor bookmark is left, it says so and how to
// get past it (the planner chose it as a step's snapshot, which happens
// only when the target no longer holds it either).
func (b *Backend) notSendable(ctx context.Context, op, dataset, name string, snaps []zsnap) error {
	bm, ok := b.orphanBookmarks(ctx, dataset, snaps)[name]
	if !ok {
		return notFound(op, dataset, name)
	}
	return storage.Errorf(storage.KindNotFound, op, dataset, name,
		"if the target no longer holds "+name+" either, destroy the bookmark (`zfs destroy "+bm.name+"`) and run the job again: ferry then plans from the snapshots that are left",
		"snapshot %s@%s was destroyed; only its cursor bookmark %s is left, which can be the base of an incremental but cannot be sent", dataset, name, bm.name)
}
