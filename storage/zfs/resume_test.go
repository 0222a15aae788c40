package zfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
)

// Native resume and raw send, over a stateful fake zfs on an OpenZFS
// feature-flag pool (zfs-fuse has neither). What the fake prints is
// OpenZFS's own output, in testdata/: the interrupted `zfs receive -s`
// message and its token (captured in an OpenZFS user's report, sanoid
// issue tracker), `zfs send -nvP -t` (resume token contents as libzfs's
// nvlist_print writes them, then the "incremental" line), the refusal of a
// token whose snapshot is gone and of `receive -A` without resume state
// (lib/libzfs/libzfs_sendrecv.c). Every command the backend runs is logged
// and the tests assert the exact lines.

// fakeState is the fake zfs's state directory: props (zfs get rows),
// token (the target's receive_resume_token), recv (a %recv clone exists),
// interrupt (the next receive is cut), gone (the source no longer has the
// token's snapshot), encryption (the source's encryption property), calls.
type fakeState struct {
	t   *testing.T
	dir string
}

func (s fakeState) touch(name string) {
	if err := os.WriteFile(filepath.Join(s.dir, name), nil, 0o644); err != nil {
		s.t.Fatal(err)
	}
}

func (s fakeState) write(name, content string) {
	if err := os.WriteFile(filepath.Join(s.dir, name), []byte(content), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

func (s fakeState) exists(name string) bool {
	_, err := os.Stat(filepath.Join(s.dir, name))
	return err == nil
}

// calls returns the zfs command lines run since the last call, without
// the usage probes of Check.
func (s fakeState) calls() []string {
	p := filepath.Join(s.dir, "calls")
	data, _ := os.ReadFile(p)
	_ = os.Remove(p)
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if l != "" && l != "receive" && l != "send" {
			out = append(out, l)
		}
	}
	return out
}

func (s fakeState) wantCalls(want ...string) {
	s.t.Helper()
	got := s.calls()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		s.t.Fatalf("zfs ran:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

const fakeStateful = `#!/bin/sh
S='@STATE@'; td='@TD@'
echo "$*" >> "$S/calls"
for last; do :; done
case "$*" in
receive) cat "$td/openzfs-receive-usage.txt" >&2; exit 2 ;;
send) cat "$td/openzfs-send-usage.txt" >&2; exit 2 ;;
"list -H -o name tank/ferry") echo tank/ferry; exit 0 ;;
"list -H -o name "*/%recv)
	if [ -f "$S/recv" ]; then echo "$last"; exit 0; fi
	echo "cannot open '$last': dataset does not exist" >&2; exit 1 ;;
"get -H -p -s local -o name,property,value,source all "*)
	awk -F'\t' -v t="$last" '$1==t && $4=="local"' "$S/props"; exit 0 ;;
"get -H -p -d 1 -o name,property,value,source "*)
	awk -F'\t' -v t="$last" '$1==t || index($1, t "@")==1' "$S/props"; exit 0 ;;
"get -H -o value receive_resume_token "*)
	if [ -f "$S/token" ]; then cat "$S/token"; else echo -; fi; exit 0 ;;
"get -H -o value encryption "*)
	if [ -f "$S/encryption" ]; then cat "$S/encryption"; else echo off; fi; exit 0 ;;
"get -H -p -o value written@"*) echo 0; exit 0 ;;
"set "*)
	k=${2%%=*}; v=${2#*=}
	awk -F'\t' -v t="$3" -v k="$k" '!($1==t && $2==k)' "$S/props" > "$S/props.new"
	printf '%s\t%s\t%s\tlocal\n' "$3" "$k" "$v" >> "$S/props.new"; mv "$S/props.new" "$S/props"; exit 0 ;;
"inherit "*)
	awk -F'\t' -v t="$3" -v k="$2" '!($1==t && $2==k)' "$S/props" > "$S/props.new"; mv "$S/props.new" "$S/props"; exit 0 ;;
"receive -A "*)
	if [ -f "$S/token" ]; then rm -f "$S/token" "$S/recv"; exit 0; fi
	cat "$td/openzfs-receive-abort-none.txt" >&2; exit 1 ;;
"receive "*)
	cat > "$S/received"
	if [ -f "$S/interrupt" ]; then
		rm "$S/interrupt"; cp "$td/openzfs-receive-resume-token.txt" "$S/token"; touch "$S/recv"
		cat "$td/openzfs-receive-interrupted.txt" >&2; exit 1
	fi
	rm -f "$S/token" "$S/recv"
	printf '%s\tguid\t202\t-\n%s\tcreatetxg\t30\t-\n%s\tcreation\t1764529300\t-\n' "$last" "$last" "$last" >> "$S/props"; exit 0 ;;
"send -n -v -P -t "*|"send -t "*)
	if [ -f "$S/gone" ]; then cat "$td/openzfs-send-resume-gone.txt" >&2; exit 1; fi
	case "$*" in "send -n"*) cat "$td/openzfs-send-nvP-resume.txt" ;; *) printf 'RESUMED %s' "$*" ;; esac; exit 0 ;;
"send -n -v -P "*) echo "incremental	x	y	3246080"; echo "size	3246080"; exit 0 ;;
"send "*) printf 'STREAM %s' "$*"; exit 0 ;;
esac
echo "fake zfs: unexpected: $*" >&2; exit 1
`

// statefulBackend is a Backend over the stateful fake, Check run, with
// tank/ferry/share holding props (zfs get rows, tab-separated).
func statefulBackend(t *testing.T, props string) (*Backend, fakeState) {
	t.Helper()
	td, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	st := fakeState{t: t, dir: t.TempDir()}
	st.write("props", props)
	dir := t.TempDir()
	zfs, zpool := filepath.Join(dir, "zfs"), filepath.Join(dir, "zpool")
	script := strings.NewReplacer("@STATE@", st.dir, "@TD@", td).Replace(fakeStateful)
	if err := os.WriteFile(zfs, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	pool := "#!/bin/sh\n[ \"$*\" = 'get all tank' ] && exec cat '" + filepath.Join(td, "openzfs-zpool-get-all.txt") + "'\nexit 1\n"
	if err := os.WriteFile(zpool, []byte(pool), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := New("tank/ferry", WithCommands(zfs, zpool))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !b.Features().ResumableReceive || !b.Features().RawSend {
		t.Fatalf("features %+v: the fake is an OpenZFS feature-flag pool", b.Features())
	}
	st.calls()
	return b, st
}

// targetProps: tank/ferry/share holds s1, received from the source's s1
// (guid 201); the next step is s2 on base s1.
const targetProps = "tank/ferry\ttype\tfilesystem\t-\n" +
	"tank/ferry/share\tguid\t111\t-\n" +
	"tank/ferry/share@s1\tguid\t201\t-\ntank/ferry/share@s1\tcreatetxg\t10\t-\ntank/ferry/share@s1\tcreation\t1764525600\t-\n" +
	"tank/ferry/share@s1\tferry:snapshot\treceived\tlocal\ntank/ferry/share@s1\tferry:received_guid\t201-5\tlocal\n"

// sourceProps: tank/ferry/share holds ferry's s1 and s2.
const sourceProps = "tank/ferry\ttype\tfilesystem\t-\n" +
	"tank/ferry/share\tguid\t111\t-\n" +
	"tank/ferry/share@s1\tguid\t201\t-\ntank/ferry/share@s1\tcreatetxg\t5\t-\ntank/ferry/share@s1\tferry:snapshot\tlocal\tlocal\n" +
	"tank/ferry/share@s2\tguid\t202\t-\ntank/ferry/share@s2\tcreatetxg\t20\t-\ntank/ferry/share@s2\tferry:snapshot\tlocal\tlocal\n"

// cutStream delivers data and then fails (a dropped link).
type cutStream struct {
	r   io.Reader
	pos int64
}

func (c *cutStream) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.pos += int64(n)
	if err == io.EOF {
		return n, errors.New("connection reset by peer")
	}
	return n, err
}

func (c *cutStream) Position() resume.Position { return resume.Position{} }
func (c *cutStream) Offset() int64             { return 0 }

func stream(data string) resume.Stream {
	r, err := resume.NewReader(strings.NewReader(data), resume.Position{})
	if err != nil {
		panic(err)
	}
	return r
}

func token(t *testing.T) string {
	data, err := os.ReadFile(filepath.Join("testdata", "openzfs-receive-resume-token.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

const recvProp = "ferry:recv:share:40s2"

// s2Head starts a fresh stream of s2 (guid 202) on s1 (guid 201): the
// receive checks it before zfs receive runs (streamhead.go).
var s2Head = beginRecord(binary.LittleEndian, substream, 201, 202)

// TestOpenZFSResumeToken: an incremental receive runs with -s; cut off, it
// leaves resume state, which Partials reports as ferry's resumable partial
// carrying the token (the %recv clone is that partial, not a leftover);
// the resumed receive takes the `send -t` stream into the same snapshot
// without discarding anything and commits it.
func TestOpenZFSResumeToken(t *testing.T) {
	b, st := statefulBackend(t, targetProps)
	ctx := context.Background()
	tok := token(t)
	req := storage.ReceiveRequest{Dataset: "share", Name: "s2", SourceGUID: "202-20", Parent: "s1", SourceDatasetGUID: "111"}

	st.touch("interrupt")
	_, err := b.Receive(ctx, req, &cutStream{r: strings.NewReader(s2Head + strings.Repeat("x", 100<<10))})
	if storage.KindOf(err) != storage.KindTemporary {
		t.Fatalf("cut receive: %v (kind %v), want Temporary (the partial is kept)", err, storage.KindOf(err))
	}
	calls := st.calls()
	wantPrefix := []string{
		"get -H -p -d 1 -o name,property,value,source type,guid,createtxg,creation,ferry:snapshot,ferry:dataset_guid,ferry:received_guid,ferry:parent_guid tank/ferry/share",
		"get -H -p -s local -o name,property,value,source all tank/ferry",
		"get -H -p -o value written@s1 tank/ferry/share",
		"get -H -p -s local -o name,property,value,source all tank/ferry",
		"list -H -o name tank/ferry/share/%recv",
		"get -H -p -s local -o name,property,value,source all tank/ferry",
	}
	if len(calls) != len(wantPrefix)+2 || strings.Join(calls[:len(wantPrefix)], "\n") != strings.Join(wantPrefix, "\n") ||
		!strings.HasPrefix(calls[len(wantPrefix)], "set "+recvProp+"={") || calls[len(wantPrefix)+1] != "receive -s -u tank/ferry/share@s2" {
		t.Fatalf("zfs ran:\n  %s", strings.Join(calls, "\n  "))
	}
	if !strings.Contains(calls[len(wantPrefix)], `"resumable":true`) {
		t.Fatalf("the receive record does not say it ran with -s: %s", calls[len(wantPrefix)])
	}

	ps, err := b.Partials(ctx, "share")
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].Name != "s2" || ps[0].ResumeToken != tok || ps[0].SourceGUID != "202-20" || ps[0].ParentGUID != "201-5" {
		t.Fatalf("partials %+v: want one for s2 carrying the token", ps)
	}
	if !strings.Contains(ps[0].Reason, "resumable where it stopped") {
		t.Fatalf("reason %q", ps[0].Reason)
	}
	st.wantCalls(
		"get -H -p -s local -o name,property,value,source all tank/ferry",
		"get -H -o value receive_resume_token tank/ferry/share",
	)

	// A token that is not the target's is refused, nothing changed.
	other := req
	other.ResumeToken = "1-0-0-00"
	if _, err := b.Receive(ctx, other, stream("RESUMED")); storage.KindOf(err) != storage.KindInvalid || !strings.Contains(err.Error(), "holds resume token") {
		t.Fatalf("a stream continuing another token: %v", err)
	}
	st.calls()
	if !st.exists("token") {
		t.Fatal("the refused resume lost the partial")
	}

	req.ResumeToken = tok
	snap, err := b.Receive(ctx, req, stream("RESUMED send -t "+tok))
	if err != nil {
		t.Fatal(err)
	}
	if snap.Name != "s2" || snap.ReceivedGUID != "202-20" || snap.ParentGUID != "201-5" {
		t.Fatalf("received %+v", snap)
	}
	calls = st.calls()
	want := []string{
		"get -H -p -d 1 -o name,property,value,source type,guid,createtxg,creation,ferry:snapshot,ferry:dataset_guid,ferry:received_guid,ferry:parent_guid tank/ferry/share",
		"get -H -p -s local -o name,property,value,source all tank/ferry",
		"get -H -o value receive_resume_token tank/ferry/share",
		"get -H -p -o value written@s1 tank/ferry/share",
		"receive -s -u tank/ferry/share@s2",
	}
	if strings.Join(calls[:len(want)], "\n") != strings.Join(want, "\n") {
		t.Fatalf("resumed receive ran:\n  %s", strings.Join(calls, "\n  "))
	}
	for _, c := range calls {
		if strings.HasPrefix(c, "receive -A") || strings.HasPrefix(c, "destroy") || strings.HasPrefix(c, "set "+recvProp) {
			t.Fatalf("the resumed receive discarded or restarted its partial: %q", c)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(st.dir, "received")); string(got) != "RESUMED send -t "+tok {
		t.Fatalf("zfs receive got %q", got)
	}
	if ps, _ := b.Partials(ctx, "share"); len(ps) != 0 {
		t.Fatalf("partials after the resumed receive: %+v", ps)
	}
}

// TestOpenZFSDiscardAndStartOver: DiscardPartial of a token partial is
// `zfs receive -A`; a receive that does not resume (a new plan) aborts
// the resume state first and starts from byte 0; `receive -A` without
// resume state is not an error.
func TestOpenZFSDiscardAndStartOver(t *testing.T) {
	b, st := statefulBackend(t, targetProps)
	ctx := context.Background()
	req := storage.ReceiveRequest{Dataset: "share", Name: "s2", SourceGUID: "202-20", Parent: "s1"}
	st.touch("interrupt")
	if _, err := b.Receive(ctx, req, &cutStream{r: strings.NewReader(s2Head + "partial")}); err == nil {
		t.Fatal("cut receive succeeded")
	}
	ps, _ := b.Partials(ctx, "share")
	st.calls()
	if len(ps) != 1 || ps[0].ResumeToken == "" {
		t.Fatalf("partials %+v", ps)
	}
	if err := b.DiscardPartial(ctx, ps[0]); err != nil {
		t.Fatal(err)
	}
	st.wantCalls(
		"get -H -p -s local -o name,property,value,source all tank/ferry",
		"get -H -o value receive_resume_token tank/ferry/share",
		"receive -A tank/ferry/share",
		"list -H -o name tank/ferry/share/%recv",
		"get -H -p -s local -o name,property,value,source all tank/ferry",
		"get -H -p -d 1 -o name,property,value,source type,guid,createtxg,creation,ferry:snapshot,ferry:dataset_guid,ferry:received_guid,ferry:parent_guid tank/ferry/share",
		"inherit "+recvProp+" tank/ferry",
	)
	if ps, _ := b.Partials(ctx, "share"); len(ps) != 0 {
		t.Fatalf("partials after discard: %+v", ps)
	}
	st.calls()

	// Interrupted again, then received without resume: aborted first.
	st.touch("interrupt")
	if _, err := b.Receive(ctx, req, &cutStream{r: strings.NewReader(s2Head + "partial")}); err == nil {
		t.Fatal("cut receive succeeded")
	}
	st.calls()
	if _, err := b.Receive(ctx, req, stream(s2Head+"STREAM from byte 0")); err != nil {
		t.Fatal(err)
	}
	calls := strings.Join(st.calls(), "\n")
	abort := strings.Index(calls, "receive -A tank/ferry/share")
	recv := strings.Index(calls, "receive -s -u tank/ferry/share@s2")
	if abort < 0 || recv < abort {
		t.Fatalf("the new receive did not abort the resume state before receiving:\n%s", calls)
	}

	// No resume state left: receive -A's refusal is not an error.
	st.touch("recv")
	if _, err := b.abortResumable(ctx, "discard partial", "share", "s2", map[string]receiveRecord{"s2": {Resumable: true}}); err != nil {
		t.Fatal(err)
	}
}

// TestOpenZFSSendResumeToken: the source continues a token with
// `zfs send -t` (estimated by `send -nvP -t`, whose "incremental" line is
// what is left); a token whose snapshot the source no longer has is
// refused as NotFound carrying storage.ErrResumeRefused, naming OpenZFS's
// reason, on the estimate and on the send.
func TestOpenZFSSendResumeToken(t *testing.T) {
	b, st := statefulBackend(t, sourceProps)
	ctx := context.Background()
	tok := token(t)
	req := storage.SendRequest{Dataset: "share", From: "s1", To: "s2", ResumeToken: tok}
	n, err := b.EstimateSendSize(ctx, req)
	if err != nil || n != 2197504 {
		t.Fatalf("estimate: %d, %v; want 2197504", n, err)
	}
	var buf bytes.Buffer
	if err := b.Send(ctx, req, &buf); err != nil {
		t.Fatal(err)
	}
	if buf.String() != "RESUMED send -t "+tok {
		t.Fatalf("stream %q", buf.String())
	}
	list := "get -H -p -d 1 -o name,property,value,source type,guid,createtxg,creation,ferry:snapshot,ferry:dataset_guid,ferry:received_guid,ferry:parent_guid tank/ferry/share"
	st.wantCalls(list, "send -n -v -P -t "+tok, list, "send -t "+tok)

	st.touch("gone")
	_, err = b.EstimateSendSize(ctx, req)
	if !errors.Is(err, storage.ErrResumeRefused) || storage.KindOf(err) != storage.KindNotFound ||
		!strings.Contains(err.Error(), "'tank/ferry/share@s2' used in the initial send no longer exists") {
		t.Fatalf("estimate of a gone token: %v", err)
	}
	err = b.Send(ctx, req, io.Discard)
	if !errors.Is(err, storage.ErrResumeRefused) || !strings.Contains(err.Error(), "no longer exists") {
		t.Fatalf("send of a gone token: %v", err)
	}
}

// TestOpenZFSRawSend: an encrypted source goes raw (-w), full and
// incremental, estimate and send; an unencrypted one plainly; with raw
// send missing an encrypted one is refused as Unsupported naming the
// dataset and both fixes, unless the request allows it decrypted.
func TestOpenZFSRawSend(t *testing.T) {
	b, st := statefulBackend(t, sourceProps)
	ctx := context.Background()
	list := "get -H -p -d 1 -o name,property,value,source type,guid,createtxg,creation,ferry:snapshot,ferry:dataset_guid,ferry:received_guid,ferry:parent_guid tank/ferry/share"
	enc := "get -H -o value encryption tank/ferry/share"

	if err := b.Send(ctx, sendReq("share", "s1", "s2"), io.Discard); err != nil {
		t.Fatal(err)
	}
	st.wantCalls(list, enc, "send -i tank/ferry/share@s1 tank/ferry/share@s2")

	st.write("encryption", "aes-256-gcm\n")
	var buf bytes.Buffer
	if err := b.Send(ctx, sendReq("share", "", "s2"), &buf); err != nil {
		t.Fatal(err)
	}
	if _, err := b.EstimateSendSize(ctx, sendReq("share", "s1", "s2")); err != nil {
		t.Fatal(err)
	}
	st.wantCalls(list, enc, "send -w tank/ferry/share@s2",
		list, enc, "send -n -v -P -w -i tank/ferry/share@s1 tank/ferry/share@s2")

	b.feat.RawSend = false
	err := b.Send(ctx, sendReq("share", "s1", "s2"), io.Discard)
	if storage.KindOf(err) != storage.KindUnsupported || !strings.Contains(err.Error(), "tank/ferry/share is encrypted (aes-256-gcm)") ||
		!strings.Contains(err.Error(), "stream.zfs_send_decrypted") || !strings.Contains(err.Error(), "has -w (raw send") {
		t.Fatalf("encrypted without raw send: %v", err)
	}
	st.wantCalls(list, enc)

	dec := sendReq("share", "s1", "s2")
	dec.Decrypted = true
	if err := b.Send(ctx, dec, io.Discard); err != nil {
		t.Fatal(err)
	}
	st.wantCalls(list, enc, "send -i tank/ferry/share@s1 tank/ferry/share@s2")
}
