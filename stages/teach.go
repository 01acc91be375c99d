package stages

// Helpers of the stages that ask the teacher (skills, label, diagnose,
// dataset).

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/teacher"
)

// teachFileHash is the hex sha256 of a file's content, so a fingerprint
// follows a file that changes in place.
func teachFileHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// teachOrder returns ps in a seeded order that does not depend on their
// order in the file: by sha256(seed, ID).
func teachOrder(ps []problems.Problem, seed uint64) []problems.Problem {
	var buf [8]byte
	binary.LittleEndian.PutUint64(buf[:], seed)
	key := make(map[string]uint64, len(ps))
	for _, p := range ps {
		h := sha256.Sum256(append(buf[:], p.ID...))
		key[p.ID] = binary.LittleEndian.Uint64(h[:8])
	}
	out := slices.Clone(ps)
	slices.SortStableFunc(out, func(a, b problems.Problem) int {
		return cmp.Or(cmp.Compare(key[a.ID], key[b.ID]), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// teachNew builds the teacher of the spec's teacher section over the run's
// store (its reply cache lives there); its fan-outs show their progress, and
// its budget holds across restarts of the stage.
func teachNew(ctx context.Context, env *job.Env) (*teacher.Teacher, error) {
	cfg := *env.Spec().Section("teacher").(*teacher.Config)
	// The payer is this stage of this run: a restarted stage's budget
	// counts the replies it paid for before, another run's stay free.
	return teacher.New(ctx, cfg, env.Store(), &teacher.Options{Logger: env.Log(), Progress: newTeachProgress(env).report,
		Payer: env.RunID() + "/" + env.Name()})
}

// teachFingerprint is the part of the teacher section that shapes replies:
// provider, model, the structured-output mode and the re-asks. Endpoint,
// limits, timeouts, retries of failed calls, budget, prices, batch mode and
// the cache change what a run costs, not what it writes.
func teachFingerprint(spec *job.Spec) any {
	c := spec.Section("teacher").(*teacher.Config)
	return struct {
		Provider, Model, Structured string
		Reasks                      int
	}{c.Provider, c.Model, c.Structured, c.Retry.Reasks}
}

// teachAbort stops a stage whose fan-out was cut short by the context or
// the budget: those items were not answered, and recording them as failed
// would finish the stage with work missing. Started again, the stage takes
// every reply already paid for from the cache.
func teachAbort[T any](ctx context.Context, results []teacher.Result[T]) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if failed, budget := teacher.Failed(results); budget > 0 {
		return fmt.Errorf("%w: %d of %d calls refused (%d failed in all); raise teacher.budget and start the run again (paid replies are cached)",
			teacher.ErrBudget, budget, len(results), failed)
	}
	return nil
}

// teachTooMany is the error of a stage whose items failed beyond its
// max_failed fraction, with the first failure (which names its item); nil
// within the fraction.
func teachTooMany(stage string, failed, total int, maxFailed float64, first error) error {
	if total == 0 || float64(failed) <= maxFailed*float64(total) {
		return nil
	}
	return fmt.Errorf("%s: %d of %d teacher items failed, more than %s.max_failed %g; first: %w",
		stage, failed, total, stage, maxFailed, first)
}

// teachBySubject answers reqs (reqs[i] about subjects[i]) with one
// teacher.Run per subject, in subject order, since a reply's parser checks
// it against its own subject's skill list (and re-asks when it names
// another); the results come back in the order of reqs.
func teachBySubject[T any](ctx context.Context, t *teacher.Teacher, stage string, subjects []string, reqs []*teacher.Request,
	parseFor func(subject string) teacher.ParseFunc[T]) []teacher.Result[T] {
	group := map[string][]int{}
	for i, subj := range subjects {
		group[subj] = append(group[subj], i)
	}
	names := make([]string, 0, len(group))
	for subj := range group {
		names = append(names, subj)
	}
	sort.Strings(names)
	out := make([]teacher.Result[T], len(reqs))
	for _, subj := range names {
		part := make([]*teacher.Request, len(group[subj]))
		for k, i := range group[subj] {
			part[k] = reqs[i]
		}
		for k, r := range teacher.Run(ctx, t, stage+"/"+subj, part, parseFor(subj)) {
			out[group[subj][k]] = r
		}
	}
	return out
}
