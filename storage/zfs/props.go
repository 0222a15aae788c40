package zfs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-nas/ferry/storage"
)

// User properties ferry keeps on ZFS objects (docs/storage-zfs.md).
const (
	// propSnapshot, on a snapshot: "local" or "received"; set last, so a
	// snapshot is ferry's (complete, recorded) exactly when it carries it.
	propSnapshot = "ferry:snapshot"

	// propDatasetGUID, on a snapshot: the identity of the dataset its
	// content was taken from (here: the dataset's guid; received: the source's).
	propDatasetGUID = "ferry:dataset_guid"
	// propReceivedGUID and propParentGUID, on a received snapshot: the
	// sender's identity of it and of its incremental base.
	propReceivedGUID = "ferry:received_guid"
	propParentGUID   = "ferry:parent_guid"
	// propReplica, on a dataset ferry received in full: "on".
	propReplica = "ferry:replica"
	// markPrefix + escaped mark name, on a dataset: the snapshot it points at.
	markPrefix = "ferry:mark:"
	// recvPrefix + escaped dataset, on the root dataset: the receive in
	// progress into that dataset (a receiveRecord as JSON).
	recvPrefix = "ferry:recv:"
)

var (
	// componentRE is what ZFS allows in a dataset name component.
	componentRE = regexp.MustCompile(`^[A-Za-z0-9_.: -]+$`)
	// snapNameRE is what ZFS allows in a snapshot name.
	snapNameRE = regexp.MustCompile(`^[A-Za-z0-9_.: -]+$`)
)

// checkNames checks dataset (and name, when set) as every backend does and
// against what ZFS can name.
func checkNames(op, dataset string, names ...string) error {
	if err := storage.CheckDataset(op, dataset); err != nil {
		return err
	}
	for _, c := range strings.Split(dataset, "/") {
		if !componentRE.MatchString(c) {
			return storage.Errorf(storage.KindInvalid, op, dataset, "", "use only letters, digits, '_', '-', '.', ':' and spaces in ZFS dataset names",
				"invalid ZFS dataset name %q (component %q)", dataset, c)
		}
	}
	for _, n := range names {
		if err := storage.CheckSnapshotName(op, dataset, n); err != nil {
			return err
		}
		if !snapNameRE.MatchString(n) {
			return storage.Errorf(storage.KindInvalid, op, dataset, n, "use only letters, digits, '_', '-', '.' and ':' in snapshot names on ZFS",
				"invalid ZFS snapshot name %q", n)
		}
	}
	return nil
}

// escapeProp makes s usable in a user property name, which ZFS limits to
// lowercase letters, digits and : - . _ : any other byte becomes :xx (hex).
func escapeProp(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, ":%02x", c)
		}
	}
	return b.String()
}

func unescapeProp(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != ':' {
			b.WriteByte(s[i])
			continue
		}
		if i+3 > len(s) {
			return "", false
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), true
}

// propRow is one line of `zfs get -H -p -o name,property,value,source`.
type propRow struct{ name, prop, value, source string }

// getProps runs zfs get for props of targets (with extra flags such as -d 1).
func (b *Backend) getProps(ctx context.Context, flags []string, props []string, targets ...string) ([]propRow, error) {
	args := append([]string{"get", "-H", "-p"}, flags...)
	args = append(args, "-o", "name,property,value,source", strings.Join(props, ","))
	args = append(args, targets...)
	out, err := run(ctx, b.zfs, nil, args...)
	if err != nil {
		return nil, err
	}
	var rows []propRow
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 4 {
			continue
		}
		rows = append(rows, propRow{f[0], f[1], f[2], f[3]})
	}
	return rows, nil
}

// localUserProps returns the user properties set on target itself (not
// inherited) whose names start with prefix.
func (b *Backend) localUserProps(ctx context.Context, target, prefix string) (map[string]string, error) {
	rows, err := b.getProps(ctx, []string{"-s", "local"}, []string{"all"}, target)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, r := range rows {
		if r.name == target && strings.HasPrefix(r.prop, prefix) {
			out[strings.TrimPrefix(r.prop, prefix)] = r.value
		}
	}
	return out, nil
}

// zsnap is one snapshot of a dataset as zfs reports it.
type zsnap struct {
	name string
	zident
	// props are ferry's user properties set on the snapshot itself.
	props map[string]string
}

// zident is what zfs says of a snapshot's or bookmark's identity and
// place in order: guid, createtxg and creation.
type zident struct {
	guid      uint64
	createtxg uint64
	creation  time.Time
}

// zidentProps are the properties zident.set reads.
var zidentProps = []string{"guid", "createtxg", "creation"}

// set records prop's value when it is one of zidentProps, and says so.
func (z *zident) set(prop, value string) bool {
	switch prop {
	case "guid":
		z.guid, _ = strconv.ParseUint(value, 10, 64)
	case "createtxg":
		z.createtxg, _ = strconv.ParseUint(value, 10, 64)
	case "creation":
		if sec, err := strconv.ParseInt(value, 10, 64); err == nil {
			z.creation = time.Unix(sec, 0).UTC()
		}
	default:
		return false
	}
	return true
}

func (s zsnap) ferrys() bool { return s.props[propSnapshot] != "" }

// ident is the copy's own identity: the guid (which a send keeps) and the
// transaction that created this copy, so that a snapshot destroyed and
// received again is another copy.
func (s zsnap) ident() string { return fmt.Sprintf("%d-%d", s.guid, s.createtxg) }

// snapshots lists every snapshot of the full dataset name fds, ordered by
// createtxg; a dataset that does not exist has none (exists false).
func (b *Backend) snapshots(ctx context.Context, fds string) (snaps []zsnap, exists bool, err error) {
	props := []string{"type", "guid", "createtxg", "creation", propSnapshot, propDatasetGUID, propReceivedGUID, propParentGUID}
	rows, err := b.getProps(ctx, []string{"-d", "1"}, props, fds)
	if err != nil {
		var ce *cmdError
		if errors.As(err, &ce) && ce.notFound() {
			return nil, false, nil
		}
		return nil, false, err
	}
	byName := map[string]*zsnap{}
	var order []string
	for _, r := range rows {
		snap, ok := strings.CutPrefix(r.name, fds+"@")
		if !ok {
			continue
		}
		s := byName[snap]
		if s == nil {
			s = &zsnap{name: snap, props: map[string]string{}}
			byName[snap] = s
			order = append(order, snap)
		}
		if !s.set(r.prop, r.value) && strings.HasPrefix(r.prop, "ferry:") && r.source == "local" {
			s.props[r.prop] = r.value
		}
	}
	for _, n := range order {
		snaps = append(snaps, *byName[n])
	}
	sortByTxg(snaps)
	return snaps, true, nil
}

func sortByTxg(s []zsnap) {
	slices.SortStableFunc(s, func(a, b zsnap) int { return cmp.Compare(a.createtxg, b.createtxg) })
}

// toSnapshot is the storage view of one of ferry's snapshots of dataset.
func (s zsnap) toSnapshot(dataset string) storage.Snapshot {
	return storage.Snapshot{
		Dataset:      dataset,
		Name:         s.name,
		GUID:         s.ident(),
		ReceivedGUID: s.props[propReceivedGUID],
		ParentGUID:   s.props[propParentGUID],
		CreatedAt:    s.creation,
		ReadOnly:     true,
		Seq:          s.createtxg,
		DatasetGUID:  s.props[propDatasetGUID],
	}
}
