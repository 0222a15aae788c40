package zfs

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ferry-nas/ferry/storage"
)

// The OpenZFS-only paths of holds and bookmarks, over a fake zfs on PATH
// that logs every command line and answers from testdata/ (output in the
// formats OpenZFS prints: `zfs holds -H` as print_holds in
// cmd/zfs/zfs_main.c writes it, `zfs get -H -p` of a bookmark). The tests
// assert the exact command lines, in order.

// fakeZFS writes a zfs that appends each command line to a log and answers
// by the shell case branches given (after which anything else fails).
// $td is testdata, $st a directory for state the branches keep.
func fakeZFS(t *testing.T, branches string) (bin string, calls func() []string) {
	t.Helper()
	td, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin, log := filepath.Join(dir, "zfs"), filepath.Join(dir, "log")
	script := "#!/bin/sh\ntd='" + td + "'\nst='" + dir + "'\necho \"$*\" >> '" + log + "'\ncase \"$*\" in\n" + branches +
		"\n*) echo \"fake zfs: unexpected: $*\" >&2; exit 1 ;;\nesac\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, func() []string {
		b, _ := os.ReadFile(log)
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
}

const (
	listAll = "get -H -p -d 1 -o name,property,value,source type,guid,createtxg,creation,ferry:snapshot,ferry:dataset_guid,ferry:received_guid,ferry:parent_guid tank/ferry/share"
	// s1 and s2, both ferry's.
	listS1S2 = `"` + listAll + `") printf 'tank/ferry/share@s1\tguid\t201\t-\ntank/ferry/share@s1\tcreatetxg\t10\t-\ntank/ferry/share@s1\tferry:snapshot\tlocal\tlocal\ntank/ferry/share@s1\tferry:dataset_guid\t111\tlocal\n'
	printf 'tank/ferry/share@s2\tguid\t202\t-\ntank/ferry/share@s2\tcreatetxg\t20\t-\ntank/ferry/share@s2\tferry:snapshot\tlocal\tlocal\ntank/ferry/share@s2\tferry:dataset_guid\t111\tlocal\n' ;;`
	// s1 gone: only s2.
	listS2      = `"` + listAll + `") printf 'tank/ferry/share@s2\tguid\t202\t-\ntank/ferry/share@s2\tcreatetxg\t20\t-\ntank/ferry/share@s2\tferry:snapshot\tlocal\tlocal\ntank/ferry/share@s2\tferry:dataset_guid\t111\tlocal\n' ;;`
	localProps  = "get -H -p -s local -o name,property,value,source all tank/ferry/share"
	getUserrefs = "get -H -p -d 1 -o name,property,value,source userrefs tank/ferry/share"
)

func openZFSBackend(t *testing.T, zfs string) *Backend {
	t.Helper()
	b, err := New("tank/ferry", WithCommands(zfs, "false"))
	if err != nil {
		t.Fatal(err)
	}
	b.feat = Features{PoolVersion: "-", ResumableReceive: true, Bookmarks: true, Holds: true, RawSend: true, ReceiveNoMount: true, SendEstimate: true, Written: true}
	return b
}

func sameCalls(t *testing.T, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("zfs command lines:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestOpenZFSCursorMarkHoldsAndBookmarks: moving the cursor to s2 holds s2,
// sets the mark, replaces the bookmark (record removed, old bookmark
// destroyed, new one made from s2, record set), then releases the cursor
// tag from s1 and the job's step tag from both (no send streams them).
func TestOpenZFSCursorMarkHoldsAndBookmarks(t *testing.T) {
	zfs, calls := fakeZFS(t, listS1S2+`
"`+localProps+`") printf 'tank/ferry/share\tferry:mark:cursor.job1\ts1\tlocal\n' ;;
"`+getUserrefs+`") printf 'tank/ferry/share\tuserrefs\t-\t-\ntank/ferry/share@s1\tuserrefs\t1\t-\ntank/ferry/share@s2\tuserrefs\t1\t-\n' ;;
"release ferry_step_job1 "*) echo "cannot release hold from snapshot '$3': no such tag on this dataset" >&2; exit 1 ;;
"hold "*|"set "*|"inherit "*|"destroy tank/ferry/share#ferry_cursor_job1"|"bookmark "*|"release "*) ;;`)
	b := openZFSBackend(t, zfs)
	if err := b.SetMark(context.Background(), "share", "cursor.job1", "s2"); err != nil {
		t.Fatal(err)
	}
	sameCalls(t, calls(), []string{
		listAll,
		"hold ferry_cursor_job1 tank/ferry/share@s2",
		"set ferry:mark:cursor.job1=s2 tank/ferry/share",
		localProps,
		"inherit ferry:bookmark:cursor.job1 tank/ferry/share",
		"destroy tank/ferry/share#ferry_cursor_job1",
		"bookmark tank/ferry/share@s2 tank/ferry/share#ferry_cursor_job1",
		listAll,
		`set ferry:bookmark:cursor.job1={"snapshot":"s2","dataset_guid":"111"} tank/ferry/share`,
		getUserrefs,
		"release ferry_cursor_job1 tank/ferry/share@s1",
		"release ferry_step_job1 tank/ferry/share@s1",
		"release ferry_step_job1 tank/ferry/share@s2",
	})
}

// TestOpenZFSSendFromCursorBookmark: s1 (the cursor) is gone on the source
// but its bookmark is there: ListSnapshots lists s1 under its identity (the
// bookmark's guid and createtxg, as s1 had), the estimate and the send are
// `-i <dataset>#ferry_cursor_<job>`, and the step holds only s2 (a bookmark
// cannot be held).
func TestOpenZFSSendFromCursorBookmark(t *testing.T) {
	zfs, calls := fakeZFS(t, listS2+`
"`+localProps+`") printf 'tank/ferry/share\tferry:mark:cursor.job1\ts1\tlocal\ntank/ferry/share\tferry:bookmark:cursor.job1\t{"snapshot":"s1","dataset_guid":"111"}\tlocal\n' ;;
"get -H -p -o name,property,value,source guid,createtxg,creation tank/ferry/share#ferry_cursor_job1") cat "$td/openzfs-get-bookmark.txt" ;;
"send -n -v -P -i tank/ferry/share#ferry_cursor_job1 tank/ferry/share@s2") cat "$td/openzfs-send-nvP-incremental.txt" ;;
"send -i tank/ferry/share#ferry_cursor_job1 tank/ferry/share@s2") printf 'STREAM' ;;
"`+getUserrefs+`") printf 'tank/ferry/share\tuserrefs\t-\t-\ntank/ferry/share@s2\tuserrefs\t0\t-\n' ;;
"hold "*|"release "*) ;;`)
	b := openZFSBackend(t, zfs)
	ctx := context.Background()
	snaps, err := b.ListSnapshots(ctx, "share")
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 2 || snaps[0].Name != "s1" || snaps[0].GUID != "201-10" || snaps[0].Seq != 10 || snaps[0].DatasetGUID != "111" || snaps[1].Name != "s2" {
		t.Fatalf("listed %+v; want s1 (from its bookmark, 201-10) then s2", snaps)
	}
	req := storage.SendRequest{Dataset: "share", From: "s1", To: "s2", Job: "job1"}
	if n, err := b.EstimateSendSize(ctx, req); err != nil || n != 3246080 {
		t.Fatalf("estimate: %d, %v", n, err)
	}
	var out strings.Builder
	if err := b.Send(ctx, req, &out); err != nil || out.String() != "STREAM" {
		t.Fatalf("send: %q, %v", out.String(), err)
	}
	bm := []string{listAll, localProps, "get -H -p -o name,property,value,source guid,createtxg,creation tank/ferry/share#ferry_cursor_job1"}
	var want []string
	want = append(want, bm...) // ListSnapshots
	want = append(want, listAll)
	want = append(want, bm...) // the estimate's sendArgs
	want = append(want, "send -n -v -P -i tank/ferry/share#ferry_cursor_job1 tank/ferry/share@s2")
	want = append(want, listAll)
	want = append(want, bm...) // the send's sendArgs
	want = append(want, getUserrefs, "hold ferry_step_job1 tank/ferry/share@s2",
		"send -i tank/ferry/share#ferry_cursor_job1 tank/ferry/share@s2", "release ferry_step_job1 tank/ferry/share@s2")
	sameCalls(t, calls(), want)

	// A full send of the bookmark's name is refused: there is no snapshot.
	err = b.Send(ctx, storage.SendRequest{Dataset: "share", To: "s1", Job: "job1"}, io.Discard)
	var se *storage.Error
	if !errors.As(err, &se) || se.Kind != storage.KindNotFound || !strings.Contains(err.Error(), "zfs destroy tank/ferry/share#ferry_cursor_job1") {
		t.Fatalf("full send of a bookmark: %v", err)
	}
}

// TestOpenZFSDestroyNamesForeignHolds: destroying s1 (held by a leftover
// cursor tag, the mark being on s2, and by someone's "keep") releases
// ferry's tag and refuses with the foreign one named, as `zfs holds -H`
// lists it; nothing is destroyed.
func TestOpenZFSDestroyNamesForeignHolds(t *testing.T) {
	zfs, calls := fakeZFS(t, listS1S2+`
"get -H -p -o value userrefs tank/ferry/share@s1") if [ -f "$st/released" ]; then echo 1; else echo 2; fi ;;
"`+localProps+`") printf 'tank/ferry/share\tferry:mark:cursor.job1\ts2\tlocal\n' ;;
"holds -H tank/ferry/share@s1") cat "$td/openzfs-holds-H.txt" ;;
"release ferry_cursor_job1 tank/ferry/share@s1") touch "$st/released" ;;`)
	b := openZFSBackend(t, zfs)
	err := b.DestroySnapshot(context.Background(), "share", "s1")
	var se *storage.Error
	if !errors.As(err, &se) || se.Kind != storage.KindConflict || !strings.Contains(err.Error(), "is held (1 user hold(s): keep)") ||
		!strings.Contains(err.Error(), "zfs holds tank/ferry/share@s1") {
		t.Fatalf("destroy of a foreign-held snapshot: %v", err)
	}
	sameCalls(t, calls(), []string{
		listAll,
		"get -H -p -o value userrefs tank/ferry/share@s1",
		"get -H -p -s local -o name,property,value,source all tank/ferry/share",
		"holds -H tank/ferry/share@s1",
		"release ferry_cursor_job1 tank/ferry/share@s1",
		"get -H -p -o value userrefs tank/ferry/share@s1",
	})
}

func TestHoldTags(t *testing.T) {
	for in, want := range map[string]string{
		"cursor.share01":   "ferry_cursor_share01",
		"received.Job-1_a": "ferry_received_Job-1_a",
		"cursor.a.b c":     "ferry_cursor_a:2eb:20c",
		"odd":              "ferry_mark_odd",
	} {
		if got := markTag(in); got != want {
			t.Errorf("markTag(%q) = %q, want %q", in, got, want)
		}
	}
	if got := stepTag("share01"); got != "ferry_step_share01" {
		t.Errorf("stepTag = %q", got)
	}
}
