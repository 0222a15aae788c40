package workflows

// keptFullSteps plans a first replication around the partial full receive
// an earlier run kept (its transient failure left it resumable): rather than
// send the wanted snapshot whole and discard the partial — terabytes already
// on the target — resume the full receive of that run's snapshot, then send
// the difference up to Want. The newest source snapshot older than Want with
// such a partial (same name, same source identity, no parent) wins; nil when
// there is none.
func keptFullSteps(in PlanInput, wantIdx int) []Step {
	for k := wantIdx - 1; k >= 0; k-- {
		s := in.Source[k]
		for _, p := range in.Partials {
			if p.Resumable() && p.ParentGUID == "" && p.Name == s.Name && p.SourceGUID == s.GUID {
				want := in.Source[wantIdx]
				return []Step{
					{To: s.Name, ToGUID: s.GUID},
					{From: s.Name, FromGUID: s.GUID, TargetParent: s.Name, To: want.Name, ToGUID: want.GUID},
				}
			}
		}
	}
	return nil
}
