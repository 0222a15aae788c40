// Package workflows holds ferry's replication workflow and its pure planner.
// Workflow code is deterministic: no I/O, no wall clock, sorted iteration;
// storage work happens in activities on the host that owns the storage.
package workflows
