// User holds: the snapshots a job needs next (its marks' snapshots, and a
// step's from and to while they stream) are held, so that neither a user's
// `zfs destroy` nor another tool removes them. See docs/storage-zfs.md.

package zfs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/retention"
	"github.com/ferry-nas/ferry/storage"
)

// tagPrefix starts every hold tag (and bookmark) ferry places.
const tagPrefix = "ferry_"

// markTag is the hold tag of a mark "<kind>.<job>": ferry_<kind>_<job>
// (cursor.share01 -> ferry_cursor_share01). A mark without a kind is
// ferry_mark_<mark>.
func markTag(mark string) string {
	kind, job, ok := strings.Cut(mark, ".")
	if !ok || kind == "" || job == "" {
		return tagPrefix + "mark_" + escapeTag(mark)
	}
	return tagPrefix + escapeTag(kind) + "_" + escapeTag(job)
}

// stepTag is the hold tag of a job's streaming step: ferry_step_<job>.
func stepTag(job string) string { return tagPrefix + "step_" + escapeTag(job) }

// escapeTag keeps letters, digits, '_' and '-' (all a job name may hold)
// and writes any other byte as :xx (hex), so that a tag is also a valid
// bookmark name and never starts with '.' (which zfs hold refuses).
func escapeTag(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, ":%02x", c)
		}
	}
	return b.String()
}

// hold places tag on snap; a tag already there is fine (a retry).
func (b *Backend) hold(ctx context.Context, tag, snap string) error {
	_, err := run(ctx, b.zfs, nil, "hold", tag, snap)
	var ce *cmdError
	if errors.As(err, &ce) && ce.says("tag already exists") {
		return nil
	}
	return err
}

// release removes tag from snap; a tag or snapshot not there is fine.
func (b *Backend) release(ctx context.Context, tag, snap string) error {
	_, err := run(ctx, b.zfs, nil, "release", tag, snap)
	var ce *cmdError
	if errors.As(err, &ce) && (ce.says("no such tag") || ce.notFound()) {
		return nil
	}
	return err
}

// heldSnapshots returns the snapshots of fds that carry user holds
// (userrefs > 0), by name, in createtxg order of the listing.
func (b *Backend) heldSnapshots(ctx context.Context, fds string) ([]string, error) {
	rows, err := b.getProps(ctx, []string{"-d", "1"}, []string{"userrefs"}, fds)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range rows {
		name, ok := strings.CutPrefix(r.name, fds+"@")
		if ok && r.prop == "userrefs" && r.value != "0" && r.value != "-" {
			out = append(out, name)
		}
	}
	return out, nil
}

// userrefs is how many user holds snap carries.
func (b *Backend) userrefs(ctx context.Context, snap string) (int, error) {
	out, err := run(ctx, b.zfs, nil, "get", "-H", "-p", "-o", "value", "userrefs", snap)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		return 0, fmt.Errorf("userrefs of %s: %q", snap, strings.TrimSpace(out))
	}
	return n, nil
}

// holdTags lists the tags on snap with `zfs holds -H`; ok is false where
// the tool cannot list them (zfs-fuse's `zfs holds` needs a Python helper
// Debian does not ship).
func (b *Backend) holdTags(ctx context.Context, snap string) (tags []string, ok bool) {
	out, err := run(ctx, b.zfs, nil, "holds", "-H", snap)
	if err != nil {
		return nil, false
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, "\t")
		if len(f) >= 2 && f[0] == snap {
			tags = append(tags, f[1])
		}
	}
	return tags, true
}

// holdMark holds the snapshot a mark is about to point at, before the mark
// moves: a crash then leaves an extra hold (released by the next mark or a
// destroy), never a mark on an unheld snapshot.
func (b *Backend) holdMark(ctx context.Context, op, dataset, mark, snapshot string) error {
	if !b.feat.Holds {
		return nil
	}
	if err := b.hold(ctx, markTag(mark), b.full(dataset)+"@"+snapshot); err != nil {
		return classify(err, storage.KindTemporary, op, dataset, snapshot, "")
	}
	return nil
}

// markMoved runs after the mark points at snapshot: the mark's tag is
// released from every other snapshot of the dataset, and so is the step
// tag of the mark's job where no send of this worker streams it (what a
// killed worker left). A failure is logged, not returned: the mark is set,
// and the next mark or destroy releases what is left.
func (b *Backend) markMoved(ctx context.Context, dataset, mark, snapshot string) {
	if !b.feat.Holds {
		return
	}
	// Not "dataset"/"snapshot": the caller's logger may carry them already.
	log := storage.Logger(ctx, b.log).With(zap.String("mark", mark), zap.String("marked", b.full(dataset)+"@"+snapshot))
	if err := b.updateBookmark(ctx, dataset, mark, snapshot); err != nil {
		log.Warn("zfs: cannot move the cursor bookmark; the held snapshot is the cursor", zap.Error(err))
	}
	fds := b.full(dataset)
	held, err := b.heldSnapshots(ctx, fds)
	if err != nil {
		log.Warn("zfs: cannot list held snapshots; the old mark's hold stays until the next mark", zap.Error(err))
		return
	}
	tag := markTag(mark)
	var step string
	if _, job, ok := strings.Cut(mark, "."); ok && job != "" {
		step = stepTag(job)
	}
	for _, name := range held {
		snap := fds + "@" + name
		if name != snapshot {
			if err := b.release(ctx, tag, snap); err != nil {
				log.Warn("zfs: cannot release the old mark's hold", zap.String("held", snap), zap.String("tag", tag), zap.Error(err))
			}
		}
		if step != "" && !b.steps.live(step, snap) {
			if err := b.release(ctx, step, snap); err != nil {
				log.Warn("zfs: cannot release a leftover step hold", zap.String("held", snap), zap.String("tag", step), zap.Error(err))
			}
		}
	}
}

// releaseOwn runs before ferry destroys dataset@name on purpose (prune, the
// discard of an unverified receive): it releases ferry's own holds on it —
// a mark's tag whose mark points elsewhere (left by a crash between hold
// and release) and step tags no send of this worker streams — and refuses
// (Conflict, naming the holds) when holds remain: a mark's own snapshot, or
// anyone else's hold.
func (b *Backend) releaseOwn(ctx context.Context, op, dataset, name string) error {
	if !b.feat.Holds {
		return nil
	}
	snap := b.full(dataset) + "@" + name
	n, err := b.userrefs(ctx, snap)
	if err != nil || n == 0 {
		return nil // not answered: the destroy itself says "dataset is busy" if held
	}
	props, err := b.localUserProps(ctx, b.full(dataset), markPrefix)
	if err != nil {
		return classify(err, storage.KindTemporary, op, dataset, name, "")
	}
	marks := map[string]string{} // tag -> the mark's snapshot
	markOf := map[string]string{}
	jobs := map[string]bool{}
	for k, v := range props {
		mark, ok := unescapeProp(k)
		if !ok {
			continue
		}
		marks[markTag(mark)], markOf[markTag(mark)] = v, mark
		if _, job, ok := strings.Cut(mark, "."); ok {
			jobs[job] = true
		}
	}
	if job, _, ok := retention.ParseName(name); ok {
		jobs[job] = true
	}
	tags, listed := b.holdTags(ctx, snap)
	if !listed {
		// Without `zfs holds`, try every tag ferry could have placed here.
		for _, job := range slices.Sorted(maps.Keys(jobs)) {
			tags = append(tags, stepTag(job), markTag("cursor."+job), markTag("received."+job))
		}
		for _, tag := range slices.Sorted(maps.Keys(marks)) {
			if !slices.Contains(tags, tag) {
				tags = append(tags, tag)
			}
		}
	}
	var kept []string
	for _, tag := range tags {
		switch {
		case !strings.HasPrefix(tag, tagPrefix):
			continue
		case marks[tag] == name:
			kept = append(kept, fmt.Sprintf("%s (ferry's mark %s points at it)", tag, markOf[tag]))
			continue
		case b.steps.live(tag, snap):
			kept = append(kept, tag+" (a send of this worker streams it)")
			continue
		}
		if err := b.release(ctx, tag, snap); err != nil {
			return classify(err, storage.KindTemporary, op, dataset, name, "")
		}
	}
	if n, err = b.userrefs(ctx, snap); err != nil || n == 0 {
		return nil
	}
	what := fmt.Sprintf("%d user hold(s)", n)
	if listed {
		var others []string
		for _, tag := range tags {
			if !strings.HasPrefix(tag, tagPrefix) {
				others = append(others, tag)
			}
		}
		others = append(others, kept...)
		what += ": " + strings.Join(others, ", ")
	} else if len(kept) > 0 {
		what += ", among them " + strings.Join(kept, ", ")
	}
	list := fmt.Sprintf("`zfs holds %s` lists its holds", snap)
	if !listed {
		list += " (zfs-fuse cannot list them: `zfs get userrefs` counts them)"
	}
	return storage.Errorf(storage.KindConflict, op, dataset, name,
		list+"; ferry never releases a hold it did not place: release one that is not needed with `zfs release <tag> "+snap+"`",
		"%s is held (%s)", snap, what)
}

// stepHolds counts, per tag and snapshot, the sends of this worker that
// hold it, so that a leftover of a killed worker is told from a live one
// and two sends of one job share one hold.
type stepHolds struct {
	mu sync.Mutex
	n  map[string]int // tag + "\x00" + snapshot -> sends holding it
}

func (s *stepHolds) live(tag, snap string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[tag+"\x00"+snap] > 0
}

// holdStep holds the send's snapshots (from, when it is a snapshot, and to)
// under the job's step tag, after releasing that tag from every other
// snapshot of the dataset no send of this worker streams (a killed
// worker's leftovers). The returned func releases them when the send ends.
func (b *Backend) holdStep(ctx context.Context, op string, req storage.SendRequest, args []string) (func(), error) {
	if !b.feat.Holds || req.Job == "" {
		return func() {}, nil
	}
	tag := stepTag(req.Job)
	fds := b.full(req.Dataset)
	var snaps []string
	for _, a := range args {
		if strings.HasPrefix(a, fds+"@") {
			snaps = append(snaps, a)
		}
	}
	s := &b.steps
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == nil {
		s.n = map[string]int{}
	}
	if held, err := b.heldSnapshots(ctx, fds); err == nil {
		for _, name := range held {
			snap := fds + "@" + name
			if s.n[tag+"\x00"+snap] == 0 {
				if err := b.release(ctx, tag, snap); err != nil {
					storage.Logger(ctx, b.log).Warn("zfs: cannot release a leftover step hold", zap.String("held", snap), zap.String("tag", tag), zap.Error(err))
				}
			}
		}
	}
	var done []string
	undo := func() {
		for _, snap := range done {
			k := tag + "\x00" + snap
			if s.n[k]--; s.n[k] > 0 {
				continue
			}
			delete(s.n, k)
			if err := b.release(context.WithoutCancel(ctx), tag, snap); err != nil {
				storage.Logger(ctx, b.log).Warn("zfs: cannot release the step hold; the next step releases it", zap.String("held", snap), zap.String("tag", tag), zap.Error(err))
			}
		}
	}
	for _, snap := range snaps {
		if s.n[tag+"\x00"+snap] == 0 {
			if err := b.hold(ctx, tag, snap); err != nil {
				undo()
				return nil, classify(err, storage.KindTemporary, op, req.Dataset, req.To, "")
			}
		}
		s.n[tag+"\x00"+snap]++
		done = append(done, snap)
	}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		undo()
	}, nil
}

// cursorMode says what keeps a job's cursor on this pool, for the log.
func (f Features) cursorMode() string {
	switch {
	case f.Bookmarks && f.Holds:
		return "a held snapshot and a bookmark #ferry_cursor_<job>"
	case f.Holds:
		return "a held snapshot (no bookmarks on this pool)"
	}
	return "the user property ferry:mark:cursor.<job> alone (no holds on this pool: pool version below 18)"
}
