// Package retention decides which of a job's snapshots a retention policy
// keeps and which it deletes, and why. The Prune activity (activities/prune.go)
// applies it on each host, after gathering the protections from the host's
// marks, partial receives and open send sessions; docs/retention.md says
// the same rule for people.
//
// Apply is pure and deterministic, so the workflow can call it as workflow
// code: it sorts its input itself, never iterates a map in an order that
// matters, and reads no clock (now is an argument).
//
// The rule, for one side (source or target) of one job:
//
//  1. Only the job's own snapshots are subject to the policy: names
//     "ferry_<job>_<time>" whose time is written as ferry writes it
//     (20060102T150405.000Z, or 20060102T150405Z from before milliseconds).
//     A name ferry did not make, or another job's snapshot, is always kept
//     (several jobs may read one source; each prunes only its own).
//  2. A snapshot's time is the one in its name, never a file time.
//  3. Protected snapshots (every job's cursor on the source, the target's
//     last received snapshot, the base of a pending or kept resumable
//     receive, anything in flight) are always kept, whatever the rule below
//     would say; they count in the grid like any other snapshot.
//  4. A snapshot whose time is after now is kept (a clock was wrong when it
//     was made) and is not used as the newest: one bad clock must not move
//     every bucket and expire the rest.
//  5. The newest remaining snapshot is always kept, and the grid counts back
//     from it: a snapshot's age is the newest's time minus its own. The grid
//     "24x1h | 7x1d | 12x30d" is 24 periods of 1h covering ages [0, 24h),
//     then 7 of 1d covering [24h, 8d), then 12 of 30d covering [8d, 368d).
//     Each period keeps its oldest snapshot (earliest time, then smallest
//     name); the others in it are deleted. A snapshot of age 368d or more
//     is older than the grid and deleted. Periods are exact durations
//     (1d = 24h), in UTC; there are no calendar months.
//  6. KeepLast N also keeps the N newest of the job's snapshots (future ones
//     not counted). With KeepLast but no grid, only those (and the
//     protected and future ones) are kept. A policy with neither keeps
//     everything.
//
// Why from the newest and not from now: a job that stops replicating (a
// host down for months, a paused schedule) keeps exactly what it had until
// a new snapshot arrives, instead of aging its last good backups out; and
// the result depends on the snapshots, not on when the prune runs (now
// only marks snapshots dated after it), so the prune step and a later
// ferry prune agree and a second pass deletes nothing more. zrepl's grid
// also counts from the newest snapshot.
//
// Why the oldest of each period: the periods slide with the newest
// snapshot. Keeping the oldest, a kept snapshot stays the oldest of each
// period it slides into, so kept snapshots end up at least one period
// apart and stay kept until they reach a longer bucket or leave the grid.
// Keeping the newest instead, every new arrival would replace the period's
// keeper before it could age, and the longer buckets would never fill.
package retention
