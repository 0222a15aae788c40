package storage

import "sync"

// DatasetLocks serialises the mutating operations on each dataset within one
// process (ferry runs one worker per host and root). The zero value is ready.
type DatasetLocks struct {
	mu   sync.Mutex
	busy map[string]bool
}

// Lock takes dataset's lock or, when an operation on it is already running,
// refuses with KindTemporary: an activity retry that races its own earlier
// attempt backs off instead of interleaving with it. Call the returned
// function to release.
func (l *DatasetLocks) Lock(op, dataset string) (func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.busy[dataset] {
		return nil, Errorf(KindTemporary, op, dataset, "", "retry when the running operation has finished", "another operation on this dataset is running")
	}
	if l.busy == nil {
		l.busy = map[string]bool{}
	}
	l.busy[dataset] = true
	return func() {
		l.mu.Lock()
		delete(l.busy, dataset)
		l.mu.Unlock()
	}, nil
}

// LockSnapshot checks dataset and the snapshot name (and each non-empty
// other name, such as an incremental parent), then takes dataset's lock:
// the preamble every mutating snapshot operation of a backend starts with.
func (l *DatasetLocks) LockSnapshot(op, dataset, name string, others ...string) (func(), error) {
	if err := CheckDataset(op, dataset); err != nil {
		return nil, err
	}
	if err := CheckSnapshotName(op, dataset, name); err != nil {
		return nil, err
	}
	for _, o := range others {
		if o == "" {
			continue
		}
		if err := CheckSnapshotName(op, dataset, o); err != nil {
			return nil, err
		}
	}
	return l.Lock(op, dataset)
}
