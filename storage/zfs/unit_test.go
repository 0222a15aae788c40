package zfs

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferry-nas/ferry/storage"
)

// The OpenZFS-only paths, over output that follows OpenZFS's own format
// strings (usage in cmd/zfs/zfs_main.c, `send -P` lines in
// lib/libzfs/libzfs_sendrecv.c, `zpool get all` of a feature-flag pool),
// replayed by a fake zfs and zpool on PATH; and zfs-fuse's usage as
// captured on this machine. testdata/ holds the text.

// fakeTools writes a zfs and a zpool that answer from testdata: usage for
// `zfs receive` and `zfs send` without arguments (recvUsage, sendUsage),
// the root dataset for `zfs list`, two ferry snapshots of tank/ferry/share
// for `zfs get`, `send -n -v -P` estimates, and `zpool get all`.
func fakeTools(t *testing.T, recvUsage, sendUsage string) (zfs, zpool string) {
	t.Helper()
	td, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	zfs, zpool = filepath.Join(dir, "zfs"), filepath.Join(dir, "zpool")
	script := `#!/bin/sh
td='` + td + `'
case "$*" in
receive) cat "$td/` + recvUsage + `" >&2; exit 2 ;;
send) cat "$td/` + sendUsage + `" >&2; exit 2 ;;
"list -H -o name tank/ferry") echo tank/ferry ;;
"get -H -p -d 1 -o name,property,value,source "*" tank/ferry/share")
	printf 'tank/ferry/share\tguid\t111\t-\n'
	printf 'tank/ferry/share@s1\tguid\t201\t-\ntank/ferry/share@s1\tcreatetxg\t10\t-\ntank/ferry/share@s1\tcreation\t1764525600\t-\ntank/ferry/share@s1\tferry:snapshot\tlocal\tlocal\n'
	printf 'tank/ferry/share@s2\tguid\t202\t-\ntank/ferry/share@s2\tcreatetxg\t20\t-\ntank/ferry/share@s2\tcreation\t1764529200\t-\ntank/ferry/share@s2\tferry:snapshot\tlocal\tlocal\n' ;;
"send -n -v -P -i tank/ferry/share@s1 tank/ferry/share@s2") cat "$td/openzfs-send-nvP-incremental.txt" ;;
"send -n -v -P tank/ferry/share@s2") cat "$td/openzfs-send-nvP-full.txt" ;;
"get -H -p -o value referenced tank/ferry/share@s2") echo 555 ;;
"get -H -o value encryption tank/ferry/share") echo off ;;
*) echo "fake zfs: unexpected: $*" >&2; exit 1 ;;
esac
`
	if err := os.WriteFile(zfs, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	pool := `#!/bin/sh
case "$*" in
"get all tank") cat '` + filepath.Join(td, "openzfs-zpool-get-all.txt") + `' ;;
*) echo "fake zpool: unexpected: $*" >&2; exit 1 ;;
esac
`
	if err := os.WriteFile(zpool, []byte(pool), 0o755); err != nil {
		t.Fatal(err)
	}
	return zfs, zpool
}

// TestOpenZFSFeaturesAndEstimate: on a feature-flag pool with OpenZFS's
// tools every feature is detected, and the estimate is `send -nvP`'s size.
func TestOpenZFSFeaturesAndEstimate(t *testing.T) {
	zfs, zpool := fakeTools(t, "openzfs-receive-usage.txt", "openzfs-send-usage.txt")
	b, err := New("tank/ferry", WithCommands(zfs, zpool))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := b.Check(ctx); err != nil {
		t.Fatal(err)
	}
	want := Features{PoolVersion: "-", ResumableReceive: true, Bookmarks: true, Holds: true, RawSend: true, Encryption: true,
		ReceiveNoMount: true, SendEstimate: true, Written: true}
	if got := b.Features(); got != want {
		t.Fatalf("features %+v, want %+v", got, want)
	}
	for _, c := range []struct {
		from string
		want int64
	}{{"s1", 3246080}, {"", 1077997568}} {
		n, err := b.EstimateSendSize(ctx, sendReq("share", c.from, "s2"))
		if err != nil || n != c.want {
			t.Fatalf("estimate from %q: %d, %v; want %d", c.from, n, err, c.want)
		}
	}
}

// TestZFSFuseFeatures: zfs-fuse's usage (captured here) has no receive -u
// or -s and no send -nvP: nothing but holds, and the estimate is the
// snapshot's referenced bytes.
func TestZFSFuseFeatures(t *testing.T) {
	zfs, zpool := fakeTools(t, "zfs-fuse-receive-usage.txt", "zfs-fuse-send-usage.txt")
	b, err := New("tank/ferry", WithCommands(zfs, zpool))
	if err != nil {
		t.Fatal(err)
	}
	f, err := b.detect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The pool's features come from the fake zpool (a feature-flag pool);
	// what the tool cannot do turns them off.
	if f.ReceiveNoMount || f.ResumableReceive || f.SendEstimate || f.RawSend {
		t.Fatalf("zfs-fuse's tools detected as %+v", f)
	}
	b.feat = f
	n, err := b.EstimateSendSize(context.Background(), sendReq("share", "s1", "s2"))
	if err != nil || n != 555 {
		t.Fatalf("estimate: %d, %v; want referenced 555", n, err)
	}
}

func TestParseSendSize(t *testing.T) {
	for in, want := range map[string]int64{
		"full\tp/d@s\t42\nsize\t42\n":           42,
		"incremental\tp/d@a\tp/d@b\t7\nsize\t7": 7,
	} {
		if n, ok := parseSendSize(in); !ok || n != want {
			t.Errorf("parseSendSize(%q) = %d, %v", in, n, ok)
		}
	}
	if _, ok := parseSendSize("total estimated size is 1.2G\n"); ok {
		t.Error("the human-readable estimate parsed as a size")
	}
}

func TestPropertyEscaping(t *testing.T) {
	for _, s := range []string{"cursor.job1", "cursor.Job1", "replicas/share01@ferry_j_20261130T180000.000Z", "a:b c%"} {
		e := escapeProp(s)
		for _, c := range e {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == ':' || c == '-' || c == '.' || c == '_') {
				t.Fatalf("escapeProp(%q) = %q holds %q, which a user property name may not", s, e, c)
			}
		}
		if back, ok := unescapeProp(e); !ok || back != s {
			t.Fatalf("unescapeProp(%q) = %q, %v; want %q", e, back, ok, s)
		}
	}
	if got := escapeProp("cursor.Job1"); got != "cursor.:4aob1" {
		t.Fatalf("escapeProp(cursor.Job1) = %q", got)
	}
	if _, ok := unescapeProp("bad:4"); ok {
		t.Fatal("a truncated escape unescaped")
	}
}

func sendReq(ds, from, to string) storage.SendRequest {
	return storage.SendRequest{Dataset: ds, From: from, To: to}
}
