package storage

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/ferry-nas/ferry/resume"
)

func TestCheckResume(t *testing.T) {
	at := resume.Position{Offset: 4096, HashState: []byte("state-at-4096")}
	req := ReceiveRequest{Dataset: "ds", Name: "s2", SourceGUID: "src-2", Parent: "s1"}
	want := OriginOf(req, "target-s1")
	held := &HeldPartial{Origin: want, Position: at}
	with := func(f func(o *ReceiveOrigin)) *HeldPartial {
		h := *held
		f(&h.Origin)
		return &h
	}
	resuming := req
	resuming.Resume = true

	for _, c := range []struct {
		name      string
		req       ReceiveRequest
		from      resume.Position
		held      *HeldPartial
		continues bool
		refusal   string // part of the refusal's message; "" when accepted
	}{
		{"fresh from 0", req, resume.Position{}, nil, false, ""},
		{"unknown mode", ReceiveRequest{Dataset: "ds", Name: "s2", Mode: "sometimes"}, resume.Position{}, nil, false, `unknown resume mode "sometimes"`},
		{"fresh from 0 beside a partial", req, resume.Position{}, held, false, ""},
		{"offset without resume", req, at, held, false, "without resume"},
		{"offset without resume, nothing held", req, at, nil, false, "without resume"},
		{"resume at the held position", resuming, at, held, true, ""},
		{"resume from 0, nothing held", resuming, resume.Position{}, nil, false, ""},
		{"resume at an offset, nothing held", resuming, at, nil, false, "no resumable partial"},
		{"resume at another offset", resuming, resume.Position{Offset: 8192, HashState: []byte("x")}, held, false, "durable up to offset 4096"},
		{"resume with another prefix", resuming, resume.Position{Offset: 4096, HashState: []byte("other")}, held, false, "durable up to offset 4096"},
		{"resume from 0 over a partial", resuming, resume.Position{}, held, false, "durable up to offset 4096"},
		{"resume with the same state in another digest", resuming, resume.Position{Offset: 4096, HashState: []byte("state-at-4096"), Digest: resume.BLAKE3}, held, false, "(sha256 state"},
		{"resume tagged sha256 at an untagged position", resuming, resume.Position{Offset: 4096, HashState: []byte("state-at-4096"), Digest: resume.SHA256}, held, true, ""},
		{"wrong snapshot", resuming, at, with(func(o *ReceiveOrigin) { o.Name = "s3" }), false, `of snapshot "s3"`},
		{"wrong source identity", resuming, at, with(func(o *ReceiveOrigin) { o.SourceGUID = "src-other" }), false, "source snapshot src-other, not src-2"},
		{"wrong parent name", resuming, at, with(func(o *ReceiveOrigin) { o.Parent = "s0" }), false, `based on base "s0"`},
		{"full partial, incremental request", resuming, at, with(func(o *ReceiveOrigin) { o.Parent, o.ParentGUID = "", "" }), false, "nothing (a full receive)"},
		{"wrong parent identity", resuming, at, with(func(o *ReceiveOrigin) { o.ParentGUID = "target-s1-before" }), false, "destroyed and received again"},
		{"parent identity not recorded (older partial)", resuming, at, with(func(o *ReceiveOrigin) { o.ParentGUID = "" }), true, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := CheckResume("receive", c.req, want, c.from, c.held)
			if c.refusal == "" {
				if err != nil || got != c.continues {
					t.Fatalf("got %v, %v; want %v, nil", got, err, c.continues)
				}
				return
			}
			if err == nil || KindOf(err) != KindInvalid || got {
				t.Fatalf("got %v, %v; want an Invalid refusal", got, err)
			}
			if !strings.Contains(err.Error(), c.refusal) || !strings.Contains(err.Error(), "ds@s2") {
				t.Fatalf("refusal %q does not name the receive or say %q", err, c.refusal)
			}
		})
	}
}

func TestResumeModeValid(t *testing.T) {
	for _, m := range append([]ResumeMode{""}, ResumeModes...) {
		if !m.Valid() {
			t.Errorf("%q not valid", m)
		}
	}
	if ResumeMode("sometimes").Valid() {
		t.Error(`"sometimes" valid`)
	}
}

func TestNoSpaceMessage(t *testing.T) {
	dir := t.TempDir()
	err := NoSpace("receive", "replicas/share01", "s1", `"photos/big.raw"`, 3<<30, 0, dir, syscall.ENOSPC)
	if err.Kind != KindNoSpace {
		t.Fatalf("kind %v", err.Kind)
	}
	err.Host = "nas-b"
	var detail *NoSpaceError
	if errors.As(err, &detail) {
		detail.Host = "nas-b"
	}
	msg := err.Error()
	for _, want := range []string{"receive replicas/share01@s1 on nas-b: no space left", `writing "photos/big.raw"`, "needs 3.0 GiB (3221225472 bytes)",
		"free on " + dir + " (nas-b) after discarding the partial receive", "or raise its quota, then run the job again; nothing of this receive was kept"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q lacks %q", msg, want)
		}
	}
	var nse *NoSpaceError
	if !errors.As(err, &nse) || nse.Free < 0 || nse.AtLeast || !IsNoSpace(err) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("detail %+v", nse)
	}
	// Unknown expected size: the bytes received are a lower bound.
	err = NoSpace("receive", "ds", "s1", "x", 0, 5<<20, "", syscall.ENOSPC)
	if msg := err.Error(); !strings.Contains(msg, "at least 5.0 MiB") || !strings.Contains(msg, "an unknown amount free on the target's filesystem") {
		t.Errorf("%q", msg)
	}
}

func TestKeepsPartial(t *testing.T) {
	for kind, keep := range map[Kind]bool{KindTemporary: true, KindNoSpace: false, KindInvalid: false, KindConflict: false, KindNotFound: false, KindUnsupported: false} {
		if got := KeepsPartial(&Error{Kind: kind}); got != keep {
			t.Errorf("%v: keeps %v, want %v", kind, got, keep)
		}
	}
	if KeepsPartial(syscall.ENOSPC) {
		t.Error("a bare ENOSPC keeps the partial")
	}
}

func TestBaseNotFound(t *testing.T) {
	err := BaseNotFound(Errorf(KindNotFound, "receive", "ds", "s1", "", "no snapshot %q", "s1"), "s1")
	if !strings.Contains(err.Error(), `incremental base "s1" is not on the target`) || !strings.Contains(err.Error(), "send a full stream") {
		t.Errorf("%v", err)
	}
	other := Errorf(KindConflict, "receive", "ds", "s1", "", "x")
	if BaseNotFound(other, "s1") != error(other) || other.Fix != "" {
		t.Errorf("a Conflict was rewritten: %v", other)
	}
}
