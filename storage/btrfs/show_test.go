package btrfs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/storagetest"
)

// TestShowMatchesBtrfsProgs: show (the GET_SUBVOL_INFO ioctl alone)
// reports what `btrfs subvolume show` prints for a writable subvolume, a
// read-only snapshot of it, a received snapshot and a received one made
// writable again; a directory that is not a subvolume is an error, not the
// subvolume holding it.
func TestShowMatchesBtrfsProgs(t *testing.T) {
	p := newPair(t, imageSize)
	ds := storagetest.TargetDataset
	got, err := p.dst.Receive(ctx, storage.ReceiveRequest{Dataset: ds, Name: "snap1", SourceGUID: p.s1.GUID, Mode: storage.ResumeOff},
		storagetest.Stream(t, p.full, resume.Position{}))
	if err != nil {
		t.Fatal(err)
	}
	rw := p.dst.root + "/rw"
	btrfsCmd(t, "subvolume", "snapshot", p.dst.subvolPath(ds, got.Name), rw)
	paths := map[string]string{
		"live dataset":        p.live,
		"local snapshot":      p.src.subvolPath(storagetest.SourceDataset, "snap1"),
		"received snapshot":   p.dst.subvolPath(ds, got.Name),
		"writable copy of it": rw,
	}
	for what, path := range paths {
		sv, err := p.dst.show(ctx, path)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		want, err := parseShow(btrfsCmd(t, "subvolume", "show", path))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		want.Ctransid, want.Otransid, want.Rtransid, want.Created = sv.Ctransid, sv.Otransid, sv.Rtransid, sv.Created
		if *sv != *want {
			t.Errorf("%s: show %+v\nbtrfs subvolume show %+v", what, *sv, *want)
		}
	}
	if sv, _ := p.dst.show(ctx, paths["received snapshot"]); !sv.ReadOnly || sv.ReceivedUUID != p.s1.GUID || sv.Stransid == 0 {
		t.Errorf("received snapshot: %+v", sv)
	}
	if sv, _ := p.dst.show(ctx, rw); sv.ReadOnly || sv.ParentUUID == "" {
		t.Errorf("writable snapshot: %+v", sv)
	}
	dir := filepath.Join(p.live, "not-a-subvolume")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if sv, err := p.dst.show(ctx, dir); err == nil {
		t.Fatalf("a plain directory was shown as %+v", sv)
	}
	if _, err := p.dst.show(ctx, filepath.Join(p.live, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a missing path: %v", err)
	}
}

// parseShow parses `btrfs subvolume show` output: a path line, then
// "\tKey:\tvalue" lines up to the "Snapshot(s):" list (and quota lines,
// which are ignored). UUIDs shown as "-" are empty.
func parseShow(out string) (*subvol, error) {
	sv := &subvol{}
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	first := true
	for sc.Scan() {
		line := sc.Text()
		if first {
			first = false
			continue // the path
		}
		if !strings.HasPrefix(line, "\t") {
			continue
		}
		key, val, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if key == "Snapshot(s)" {
			break
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		var err error
		switch key {
		case "Name":
			sv.Name = val
		case "UUID":
			sv.UUID, err = parseUUID(val)
		case "Parent UUID":
			sv.ParentUUID, err = parseUUID(val)
		case "Received UUID":
			sv.ReceivedUUID, err = parseUUID(val)
		case "Subvolume ID":
			sv.ID, err = strconv.ParseUint(val, 10, 64)
		case "Generation":
			sv.Generation, err = strconv.ParseUint(val, 10, 64)
		case "Send transid":
			sv.Stransid, err = strconv.ParseUint(val, 10, 64)
		case "Flags":
			for _, f := range strings.FieldsFunc(val, func(r rune) bool { return r == ',' || r == ' ' }) {
				if f == "readonly" {
					sv.ReadOnly = true
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, k := range []string{"UUID", "Subvolume ID", "Flags", "Received UUID", "Parent UUID"} {
		if !seen[k] {
			return nil, fmt.Errorf("no %q in the output", k)
		}
	}
	if sv.UUID == "" {
		return nil, errors.New("the subvolume has no uuid")
	}
	return sv, nil
}

func parseUUID(s string) (string, error) {
	if s == "-" || s == "" {
		return "", nil
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return "", err
	}
	if u == uuid.Nil {
		return "", nil
	}
	return u.String(), nil
}
