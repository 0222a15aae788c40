package activities

import (
	"testing"

	"github.com/ferry-nas/ferry/resume"
)

// A retried receive counts what the attempt before it moved, and says
// whether it resumed or started over, and why.
func TestReceiveTallyCarriesEarlierAttempts(t *testing.T) {
	const mib = 1 << 20
	earlier := ReceiveProgress{Bytes: 80 * mib, StartOffset: 0, StreamSent: 80 * mib, WireSent: 81 * mib, Attempt: 1, Reconnects: 2}

	// Resumed past the last heartbeat: the target's checkpoint proves the
	// killed attempt moved the bytes in between.
	tl := &receiveTally{attempt: 2, earlier: &earlier, streamBefore: earlier.StreamSent, wireBefore: earlier.WireSent, reconnectsBefore: 2}
	tl.begin(resume.Position{Offset: 84 * mib}, true, "auto", false)
	tl.passDone(293*mib-84*mib, 210*mib, 1)
	var res ReceiveResult
	tl.fill(&res)
	if res.StreamSent != 293*mib || res.StreamSize != 293*mib || res.WireSent != 85*mib+210*mib || res.Resumes != 1 || res.Restarts != 0 || res.TotalReconnects != 3 || res.Attempts != 2 {
		t.Errorf("after a resume: %+v", res)
	}
	hb := tl.progress(100*mib, 293*mib, 96*mib, 1, 1, 0, 0)
	if hb.StartOffset != 84*mib || hb.Attempt != 2 || hb.Resumes != 1 {
		t.Errorf("heartbeat after a resume: %+v", hb)
	}

	// Off mode: the retry starts over from byte 0, and says why.
	tl = &receiveTally{attempt: 2, earlier: &earlier, streamBefore: earlier.StreamSent, wireBefore: earlier.WireSent}
	tl.begin(resume.Position{}, false, "off", false)
	tl.passDone(293*mib, 294*mib, 0)
	res = ReceiveResult{}
	tl.fill(&res)
	if res.StreamSent != 373*mib || res.Restarts != 1 || res.Restart != RestartModeOff || res.Resumes != 0 {
		t.Errorf("after a restart in off mode: %+v", res)
	}

	// A first attempt counts nothing extra.
	tl = &receiveTally{attempt: 1}
	tl.begin(resume.Position{Offset: 10 * mib}, true, "auto", false)
	tl.passDone(5*mib, 5*mib, 0)
	res = ReceiveResult{}
	tl.fill(&res)
	if res.StreamSent != 5*mib || res.Resumes != 0 || res.Restarts != 0 {
		t.Errorf("first attempt: %+v", res)
	}
}
