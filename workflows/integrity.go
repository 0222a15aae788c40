package workflows

import (
	"fmt"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/ferry-nas/ferry/activities"
)

// changeRefuseModified: after greet, a modified snapshot on either side
// fails the run as Conflict before anything is planned or sent, and so
// does a foreign item on the target where a planned step would receive.
const changeRefuseModified = "greet-refuses-modified-snapshots"

// refuseModified is the Conflict for the modified snapshots either side
// reported at greet, or nil. A modified replica is never used as a base or
// reported as in sync, so the run stops before it plans.
func refuseModified(in ReplicateInput, src, tgt activities.InventoryResult) error {
	var found []string
	var names []string
	for _, side := range []struct {
		ep  Endpoint
		inv activities.InventoryResult
	}{{in.Source, src}, {in.Target, tgt}} {
		for _, a := range side.inv.Anomalies {
			if a.Kind != activities.AnomalyModified {
				continue
			}
			found = append(found, fmt.Sprintf("%s@%s (%s on %s) is modified: %s. To fix: %s", side.ep, a.Name, a.ID, side.ep.Host, a.What, a.Fix))
			names = append(names, a.Name)
		}
	}
	if len(found) == 0 {
		return nil
	}
	return temporal.NewApplicationErrorWithOptions(
		fmt.Sprintf("job %s: %s -> %s: nothing was sent and nothing on the target was changed: %s",
			in.Job, in.Source, in.Target, strings.Join(found, " | ")),
		activities.ErrConflict, temporal.ApplicationErrorOptions{NonRetryable: true, Details: []any{names}})
}

// foreignItems lists what greet found on either side that ferry did not
// make, for the run's result; refuseForeignInTheWay is the Conflict for
// those that occupy a name the plan receives.
func foreignItems(in ReplicateInput, src, tgt activities.InventoryResult) []string {
	var out []string
	for _, side := range []struct {
		ep  Endpoint
		inv activities.InventoryResult
	}{{in.Source, src}, {in.Target, tgt}} {
		for _, a := range side.inv.Anomalies {
			if a.Kind == activities.AnomalyForeign {
				out = append(out, fmt.Sprintf("%s: %s (%s)", side.ep.Host, a.ID, a.What))
			}
		}
	}
	return out
}

func refuseForeignInTheWay(in ReplicateInput, tgt activities.InventoryResult, plan Plan) error {
	for _, step := range plan.Steps {
		for _, a := range tgt.Anomalies {
			if a.Kind == activities.AnomalyForeign && a.Name == step.To {
				return temporal.NewApplicationErrorWithOptions(
					fmt.Sprintf("job %s: %s -> %s: %s@%s cannot be received: %s on %s is %s; nothing was sent. To fix: %s",
						in.Job, in.Source, in.Target, in.Target, step.To, a.ID, in.Target.Host, a.What, a.Fix),
					activities.ErrConflict, temporal.ApplicationErrorOptions{NonRetryable: true, Details: []any{[]string{a.Name}}})
			}
		}
	}
	return nil
}
