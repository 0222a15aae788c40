package activities

import (
	"context"

	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/logging"
	"github.com/ferry-nas/ferry/storage"
)

// CheckNewDatasetInput asks the restore's destination whether the dataset
// is new.
type CheckNewDatasetInput struct {
	Job, Dataset string
}

// CheckNewDatasetResult is empty; a dataset that exists is a Conflict.
type CheckNewDatasetResult struct{}

// MaterializeInput makes the restored snapshot a live dataset.
type MaterializeInput struct {
	Job, Dataset, Name string
}

// MaterializeResult is where the restored dataset is and the content
// digest of its live tree (storage.TreeDigest).
type MaterializeResult struct {
	Path   string
	Digest string
}

// CheckNewDataset refuses a restore into a dataset that exists.
func (h *Host) CheckNewDataset(ctx context.Context, in CheckNewDatasetInput) (CheckNewDatasetResult, error) {
	log := h.log(ctx, in.Job, "restore check")
	if err := h.Backend.CheckNewDataset(ctx, in.Dataset); err != nil {
		return CheckNewDatasetResult{}, h.fail(log, "restore into", err)
	}
	return CheckNewDatasetResult{}, nil
}

// Materialize makes the received replica the live dataset and digests the
// live tree, so that the restore can compare it with the replica's.
func (h *Host) Materialize(ctx context.Context, in MaterializeInput) (MaterializeResult, error) {
	log := h.log(ctx, in.Job, "materialize").With(logging.Snapshot(in.Name))
	live, err := h.Backend.Materialize(ctx, in.Dataset, in.Name)
	if err != nil {
		return MaterializeResult{}, h.fail(log, "materialize restore", err)
	}
	d, err := storage.TreeDigest(live, nil)
	if err != nil {
		return MaterializeResult{}, h.fail(log, "content digest of the restored dataset", storage.Wrap(err, storage.KindTemporary, "content digest", in.Dataset, ""))
	}
	log.Info("restored dataset is live", zap.String("path", live), zap.String("digest", d))
	return MaterializeResult{Path: live, Digest: d}, nil
}
