package starter

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/internal/units"
	"github.com/ferry-nas/ferry/workflows"
)

// Progress is a snapshot of a run: its phase and step from the workflow's
// status query, and the live transfer numbers of the current step from the
// pending Receive activity's last heartbeat.
//
// Stream bytes are the backend's send stream (what the size estimate and a
// resume offset count); wire bytes are the frames on the network,
// compressed when the job compresses, and what stream.bwlimit caps. Every
// byte figure says which it is.
type Progress struct {
	WorkflowID string `json:"workflow_id"`
	RunID      string `json:"run_id"`
	// Status is the execution status: Running, Completed, Failed, ...
	Status    string    `json:"status"`
	StartTime time.Time `json:"start_time"`
	Phase     string    `json:"phase,omitempty"`
	Snapshot  string    `json:"snapshot,omitempty"`
	// TargetHost receives the stream (from the FerryTarget attribute).
	TargetHost string `json:"target_host,omitempty"`
	// Step (1-based) of Steps planned; 0 before the plan is known.
	Step  int `json:"step"`
	Steps int `json:"steps"`
	// DoneBytes: wire bytes of the steps already finished, every attempt.
	DoneBytes int64 `json:"done_wire_bytes"`
	// Bytes is the stream position the step's receive reached (a resumed
	// prefix included) of Expected, the source's estimate of the stream
	// (0 when unknown); Rate and WireRate are stream and wire bytes per
	// second. All zero when no Receive runs; the rates and ETA are also
	// zero when the heartbeat is stale (Stalled).
	Bytes    int64   `json:"stream_bytes"`
	Expected int64   `json:"stream_expected"`
	Rate     float64 `json:"stream_rate"`
	WireRate float64 `json:"wire_rate"`
	// StreamSent and WireSent are what the step's receive moved over all
	// its attempts (one cut short counts up to its last heartbeat).
	StreamSent int64 `json:"stream_sent"`
	WireSent   int64 `json:"wire_sent"`
	// ETA of the current step; 0 when unknown. JSON: eta_seconds.
	ETA time.Duration `json:"-"`
	// LastHeartbeat is when the receiving worker last reported.
	LastHeartbeat time.Time `json:"last_heartbeat,omitzero"`
	// Silent is how long the receive has gone without a heartbeat, set
	// only when that is over twice the worker's heartbeat interval: the
	// worker is probably down. JSON: silent_seconds.
	Silent time.Duration `json:"-"`
	// SilentAtLeast: the last heartbeat's time is gone (the attempt that
	// sent it ended); Silent is the time since that attempt ended.
	SilentAtLeast bool `json:"silent_at_least,omitempty"`
	// Waiting: the receive's next attempt waits for a target worker to
	// pick it up (the one before failed).
	Waiting bool `json:"waiting,omitempty"`
	// PickupHost and PickupActivity name an activity that has waited
	// PickupWait (over 10 s) for a worker of that host to pick it up.
	// JSON: pickup_wait_seconds.
	PickupHost     string        `json:"pickup_host,omitempty"`
	PickupActivity string        `json:"pickup_activity,omitempty"`
	PickupWait     time.Duration `json:"-"`
	// Attempt of the current receive (above 1 after a retry) and the last
	// failure it is retrying from.
	Attempt     int32  `json:"attempt,omitempty"`
	LastFailure string `json:"last_failure,omitempty"`
	// ReceiverLost: the last failure is the receive's heartbeat timeout
	// (its worker stopped reporting: killed, crashed, disconnected).
	ReceiverLost bool `json:"receiver_lost,omitempty"`
	// ResumedAt is the stream offset the current attempt resumed from
	// after an earlier attempt was cut short (0: it did not resume).
	ResumedAt int64 `json:"resumed_at,omitempty"`
	// Resumes, Restarts (from byte 0, for Restart's reason) and Reconnects
	// of the step's receive, over all its attempts.
	Resumes    int    `json:"resumes,omitempty"`
	Restarts   int    `json:"restarts,omitempty"`
	Restart    string `json:"restart,omitempty"`
	Reconnects int    `json:"reconnects,omitempty"`
	// LastError is the workflow's last recovered error (status query).
	LastError string `json:"last_error,omitempty"`
	// Unanswered is set when the status query went unanswered (no worker
	// is polling ferry's workflow queue); Phase then comes from FerryPhase.
	Unanswered bool `json:"unanswered,omitempty"`
	// Resuming is set when the current step continues a partial receive an
	// earlier run kept; ResumedBytes is how much of it was kept (0 when the
	// backend resumes by token and does not say).
	Resuming     bool  `json:"resuming,omitempty"`
	ResumedBytes int64 `json:"resumed_bytes,omitempty"`
	// Note is the run's note for the administrator (status query), known
	// once the plan is made.
	Note string `json:"note,omitempty"`
	// Unreachable is set (Follow only) while Temporal cannot be reached:
	// the error, and since when.
	Unreachable      string    `json:"unreachable,omitempty"`
	UnreachableSince time.Time `json:"unreachable_since,omitzero"`
}

// MarshalJSON writes ETA and Silent as seconds, which scripts read more
// easily than nanoseconds.
func (p Progress) MarshalJSON() ([]byte, error) {
	type plain Progress
	return json.Marshal(struct {
		plain
		ETASeconds    int64 `json:"eta_seconds"`
		SilentSeconds int64 `json:"silent_seconds,omitempty"`
		PickupSeconds int64 `json:"pickup_wait_seconds,omitempty"`
	}{plain(p), int64(p.ETA / time.Second), int64(p.Silent / time.Second), int64(p.PickupWait / time.Second)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (p *Progress) UnmarshalJSON(data []byte) error {
	type plain Progress
	var v struct {
		plain
		ETASeconds    int64 `json:"eta_seconds"`
		SilentSeconds int64 `json:"silent_seconds"`
		PickupSeconds int64 `json:"pickup_wait_seconds"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	*p = Progress(v.plain)
	p.ETA, p.Silent = time.Duration(v.ETASeconds)*time.Second, time.Duration(v.SilentSeconds)*time.Second
	p.PickupWait = time.Duration(v.PickupSeconds) * time.Second
	return nil
}

// Running reports whether the run had not finished when it was inspected.
func (p Progress) Running() bool { return p.Status == "Running" }

// same reports whether p and q show the same thing; the heartbeat time alone
// changing is not news, how long a worker has been silent is.
func (p Progress) same(q Progress) bool {
	p.LastHeartbeat, q.LastHeartbeat = time.Time{}, time.Time{}
	p.Silent, q.Silent = p.Silent.Round(5*time.Second), q.Silent.Round(5*time.Second)
	p.PickupWait, q.PickupWait = p.PickupWait.Round(5*time.Second), q.PickupWait.Round(5*time.Second)
	return p == q
}

// String renders p as one line, e.g.
// "stream step 1/2 ferry_share01_20250101T000000Z  1.2 GiB / 4.0 GiB stream (30%)  20.0 MiB/s wire  ETA 1m0s".
func (p Progress) String() string {
	if p.Unreachable != "" {
		return "Temporal unreachable: " + p.Unreachable
	}
	var b strings.Builder
	phase := p.Phase
	if phase == "" {
		phase = strings.ToLower(p.Status)
	}
	b.WriteString(phase)
	if p.Steps > 0 && p.Step > 0 {
		fmt.Fprintf(&b, " step %d/%d", p.Step, p.Steps)
	}
	if p.Snapshot != "" {
		b.WriteString(" " + p.Snapshot)
	}
	if p.Bytes > 0 || p.Expected > 0 {
		rp := activities.ReceiveProgress{Bytes: p.Bytes, Expected: p.Expected}
		if p.Silent <= 0 && !p.Waiting { // a stale rate and ETA would say the transfer goes on
			rp.Rate, rp.WireRate = p.Rate, p.WireRate
		}
		b.WriteString("  " + rp.String())
	} else if p.DoneBytes > 0 {
		b.WriteString("  " + FormatBytes(p.DoneBytes) + " moved on the wire")
	}
	if p.Silent > 0 || p.Waiting {
		b.WriteString("  " + p.silence())
	}
	if p.PickupHost != "" {
		fmt.Fprintf(&b, "  no worker of %s has picked up %s for %s — is `ferry worker --host %s` running?", p.PickupHost, p.PickupActivity, FormatDuration(p.PickupWait.Round(time.Second)), p.PickupHost)
	}
	if s := p.attempts(); s != "" {
		b.WriteString("  (" + s + ")")
	}
	if p.Resuming && p.Phase == workflows.PhaseStream {
		if p.ResumedBytes > 0 {
			fmt.Fprintf(&b, "  (resuming from %s kept by an earlier run)", FormatBytes(p.ResumedBytes))
		} else {
			b.WriteString("  (resuming a partial receive kept by an earlier run)")
		}
	}
	if p.Unanswered {
		if p.Phase == "" {
			return "waiting for a worker (none answered the status query)"
		}
		b.WriteString("  (no worker answered the status query)")
	}
	return b.String()
}

// silence words a receive that stopped reporting.
func (p Progress) silence() string {
	host := p.TargetHost
	if host == "" {
		host = "the receiving worker"
	}
	atLeast := ""
	if p.SilentAtLeast {
		atLeast = "at least "
	}
	s := fmt.Sprintf("no progress from %s for %s%s — worker down?", host, atLeast, FormatDuration(p.Silent.Round(time.Second)))
	if p.Silent <= 0 {
		s = fmt.Sprintf("waiting for %s to take the receive up again — worker down?", host)
	}
	if p.Waiting && p.Attempt > 1 {
		if p.TargetHost != "" { // name the process that has to come back
			s += fmt.Sprintf(" (attempt %d waits for `ferry worker --host %s`)", p.Attempt, p.TargetHost)
		} else {
			s += fmt.Sprintf(" (attempt %d waits for it)", p.Attempt)
		}
	}
	return s
}

// attempts words what happened to the step's receive: a resume or a
// restart after an attempt was cut short, reconnects, retries.
func (p Progress) attempts() string {
	var parts []string
	after := ""
	if p.Attempt > 1 {
		after = fmt.Sprintf(" after attempt %d failed", p.Attempt-1)
		if p.ReceiverLost {
			// Its heartbeat timed out: the worker died or restarted, or its
			// heartbeats could not reach Temporal.
			host := p.TargetHost
			if host == "" {
				host = "the receiving worker"
			}
			after = " after " + host + " stopped reporting"
		}
	}
	switch {
	case p.Waiting:
	case p.ResumedAt > 0 && p.Expected > 0:
		parts = append(parts, fmt.Sprintf("resumed at %d%%%s", units.Percent(p.ResumedAt, p.Expected), after))
	case p.ResumedAt > 0:
		parts = append(parts, fmt.Sprintf("resumed at %s%s", FormatBytes(p.ResumedAt), after))
	case p.Restart != "" && p.Attempt > 1:
		parts = append(parts, "restarted from 0"+after+": "+p.Restart)
	case p.Attempt > 1 && !p.ReceiverLost && p.LastFailure != "":
		parts = append(parts, fmt.Sprintf("attempt %d, after: %s", p.Attempt, p.LastFailure))
	}
	if p.Resumes+p.Restarts > 1 {
		parts = append(parts, fmt.Sprintf("%d resumes, %d restarts", p.Resumes, p.Restarts))
	}
	if p.Reconnects == 1 {
		parts = append(parts, "1 reconnect")
	} else if p.Reconnects > 1 {
		parts = append(parts, fmt.Sprintf("%d reconnects", p.Reconnects))
	}
	if p.Attempt > 1 && p.WireSent > 0 && !p.Waiting {
		parts = append(parts, fmt.Sprintf("%s on the wire over %d attempts", FormatBytes(p.WireSent), p.Attempt))
	}
	return strings.Join(parts, ", ")
}
