package activities

import (
	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
)

// Mapping between storage's types and the wire types in wire.go: the only
// place that knows both.

func snapshotOf(s storage.Snapshot) Snapshot {
	return Snapshot{
		Dataset: s.Dataset, Name: s.Name, GUID: s.GUID, ReceivedGUID: s.ReceivedGUID, ParentGUID: s.ParentGUID,
		CreatedAt: s.CreatedAt, ReadOnly: s.ReadOnly, Digest: s.Digest, Seq: s.Seq, DatasetGUID: s.DatasetGUID,
	}
}

func snapshotsOf(in []storage.Snapshot) []Snapshot {
	if in == nil {
		return nil
	}
	out := make([]Snapshot, len(in))
	for i, s := range in {
		out[i] = snapshotOf(s)
	}
	return out
}

func partialOf(p storage.Partial) Partial {
	out := Partial{
		Dataset: p.Dataset, Name: p.Name, ID: p.ID, Reason: p.Reason,
		SourceGUID: p.SourceGUID, ParentGUID: p.ParentGUID, ResumeToken: p.ResumeToken,
	}
	if p.Resume != nil {
		out.Resume = &ResumePosition{Offset: p.Resume.Offset, HashState: p.Resume.HashState, Digest: p.Resume.Digest}
	}
	return out
}

func partialsOf(in []storage.Partial) []Partial {
	if in == nil {
		return nil
	}
	out := make([]Partial, len(in))
	for i, p := range in {
		out[i] = partialOf(p)
	}
	return out
}

// storagePartial is the partial the backend is asked to discard.
func storagePartial(p Partial) storage.Partial {
	out := storage.Partial{
		Dataset: p.Dataset, Name: p.Name, ID: p.ID, Reason: p.Reason,
		SourceGUID: p.SourceGUID, ParentGUID: p.ParentGUID, ResumeToken: p.ResumeToken,
	}
	if p.Resume != nil {
		out.Resume = &resume.Position{Offset: p.Resume.Offset, HashState: p.Resume.HashState, Digest: p.Resume.Digest}
	}
	return out
}

func (in VerifyInput) storageRequest() storage.VerifyRequest {
	return storage.VerifyRequest{
		Dataset: in.Dataset, Name: in.Name, SourceGUID: in.SourceGUID,
		ParentSourceGUID: in.ParentSourceGUID, Digest: in.Digest,
	}
}

func anomaliesOf(in []storage.Anomaly) []Anomaly {
	if in == nil {
		return nil
	}
	out := make([]Anomaly, len(in))
	for i, a := range in {
		out[i] = Anomaly{Dataset: a.Dataset, Kind: string(a.Kind), Name: a.Name, ID: a.ID, What: a.What, Fix: a.Fix()}
	}
	return out
}
