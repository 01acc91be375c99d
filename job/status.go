package job

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/statjob/statjob/storage"
)

// StageStatus is one stage's state in a run, for `statjob status`.
type StageStatus struct {
	Stage       string    `json:"stage"`
	State       string    `json:"state"` // "done", "reused", "running", "stale" (lease expired), "pending"
	Fingerprint string    `json:"fingerprint"`
	Started     time.Time `json:"started,omitzero"`
	Finished    time.Time `json:"finished,omitzero"`
	Holder      string    `json:"holder,omitempty"` // done: who finished it; running: who holds it
	Expires     time.Time `json:"expires,omitzero"` // running: lease expiry
	Shards      string    `json:"shards,omitempty"` // sharded stages in progress: "1/2 shards"
}

// Status reports every stage of run runID, in the run's stage order.
func Status(ctx context.Context, store storage.Store, runID string, now time.Time) ([]StageStatus, error) {
	rec, err := ReadRun(ctx, store, runID)
	if err != nil {
		return nil, err
	}
	leases, err := ReadLeases(ctx, store, runID)
	if err != nil {
		return nil, fmt.Errorf("read leases of run %s: %w", runID, err)
	}
	var out []StageStatus
	for _, name := range rec.Stages {
		s := StageStatus{Stage: name, State: "pending", Fingerprint: rec.Fingerprints[name]}
		var m Manifest
		err := readJSON(ctx, store, stageKey(runID, name, manifestName), &m)
		switch {
		case err == nil:
			s.State, s.Started, s.Finished, s.Holder = "done", m.Started, m.Finished, m.Holder
			if m.ReusedFrom != "" {
				s.State = "reused"
			}
		case !errors.Is(err, storage.ErrNotExist):
			return nil, err
		default:
			done, total := 0, 0
			for piece, ls := range leases {
				shard, isShard := strings.CutPrefix(piece, name+".")
				if piece != name && !(isShard && strings.Contains(shard, "-of-")) || ls.Released {
					continue
				}
				s.State, s.Holder, s.Started, s.Expires = "running", ls.Holder, ls.Acquired, ls.Expires
				if now.After(ls.Expires) {
					s.State = "stale"
				}
			}
			// Count the finished pieces of the split the run works in.
			splits, err := shardSplits(ctx, store, runID, name)
			if err != nil {
				return nil, err
			}
			if len(splits) > 0 {
				total = bestSplit(splits)
				done = splits[total]
			}
			if total > 0 {
				s.Shards = fmt.Sprintf("%d/%d shards", done, total)
			}
		}
		out = append(out, s)
	}
	return out, nil
}
