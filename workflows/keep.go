package workflows

import (
	"errors"

	"go.temporal.io/sdk/temporal"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/storage"
)

// transientFailures are the run failures after which a resumable partial
// receive is still worth its bytes: nothing was wrong with what it holds,
// a host or the link was away for too long.
var transientFailures = map[string]bool{
	activities.ErrHostUnavailable:  true,
	activities.ErrSessionLost:      true,
	storage.KindTemporary.String(): true,
}

// keepsResumable says whether compensation after a run that ended with err
// keeps the target's resumable partial receives for the next run to resume.
// Only a transient failure does; a cancelled run, a verify failure, a
// conflict, an invalid stream, a missing snapshot (NotFound), NoSpace (the
// backend has already dropped that partial) and anything unknown discard.
// A refused resume never gets here: the Receive activity itself restarts
// from byte 0, discarding the partial the source no longer matches.
func keepsResumable(err error, cancelled bool) bool {
	if err == nil || cancelled || temporal.IsCanceledError(err) {
		return false
	}
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		return transientFailures[ae.Type()]
	}
	var te *temporal.TimeoutError
	return errors.As(err, &te)
}
