package teacher

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/sourcegraph/conc/stream"
)

// Result is the outcome of one item of a fan-out. Err is nil or wraps one of
// ErrTruncated, ErrMalformed, ErrBudget, ErrRejected, a context error or the
// provider's last error; Raw keeps the reply text of a failed item so nothing
// paid for is dropped.
type Result[T any] struct {
	Value  T
	Reply  *Reply // the last reply (nil when no reply came)
	Raw    string // the last reply's text
	Reasks int
	Err    error
}

// ParseFunc turns a reply's text into a value, or says why it cannot.
type ParseFunc[T any] func(text string) (T, error)

// reaskPrompt follows a reply that did not parse.
const reaskPrompt = "Your previous reply could not be read: %v\nAnswer again, following the requested format exactly."

// Generate sends one request through the chain and parses the reply. A
// reply that does not parse is re-asked with the parse error (up to
// retry.reasks times); a truncated reply is not parsed and fails with
// ErrTruncated.
func Generate[T any](ctx context.Context, t *Teacher, req *Request, parse ParseFunc[T]) Result[T] {
	var res Result[T]
	r := req
	for {
		reply, err := t.Call(ctx, r)
		if err != nil {
			res.Err = err
			return res
		}
		res.Reply, res.Raw = reply, reply.Text
		if reply.Finish == FinishLength {
			t.stats.truncated.Add(1)
			res.Err = fmt.Errorf("%w (%d output tokens)", ErrTruncated, reply.Usage.Output)
			return res
		}
		v, perr := parse(reply.Text)
		if perr == nil {
			res.Value = v
			return res
		}
		if res.Reasks >= t.cfg.Retry.Reasks {
			t.stats.malformed.Add(1)
			res.Err = fmt.Errorf("%w after %d re-asks: %v", ErrMalformed, res.Reasks, perr)
			return res
		}
		res.Reasks++
		t.stats.reasks.Add(1)
		next := *r
		next.Messages = append(append([]Message(nil), r.Messages...),
			Message{Role: Assistant, Content: reply.Text},
			Message{Role: User, Content: fmt.Sprintf(reaskPrompt, perr)})
		r = &next
	}
}

// Map generates every request concurrently and returns the results in input
// order; see Each.
func Map[T any](ctx context.Context, t *Teacher, reqs []*Request, parse ParseFunc[T]) []Result[T] {
	return mapNamed(ctx, t, "", reqs, parse)
}

// mapNamed is Map with the name Options.Progress reports.
func mapNamed[T any](ctx context.Context, t *Teacher, name string, reqs []*Request, parse ParseFunc[T]) []Result[T] {
	out := make([]Result[T], len(reqs))
	each(ctx, t, name, reqs, parse, func(i int, r Result[T]) { out[i] = r })
	return out
}

// Each generates every request concurrently and hands each result to fn in
// input order as soon as it and all before it are done (a stage can write
// its JSONL as it goes). At most limits.concurrency calls are at the
// provider at once (fewer while the adaptive limit is down). Once ctx is
// cancelled no new call starts (no retry, no re-ask); calls in flight
// finish, or are abandoned when their attempt times out or ctx's deadline
// passes, and their replies are cached; every item not started reports
// ctx's error. A budget stop does not stop the fan-out: cached items still
// come back, the others fail fast with ErrBudget.
//
// The fan-out is twice as wide as limits.concurrency: the pacer holds the
// provider to the limit, and the extra goroutines read and write the cache
// and parse while the provider's slots are busy with the next calls.
func Each[T any](ctx context.Context, t *Teacher, reqs []*Request, parse ParseFunc[T], fn func(i int, r Result[T])) {
	each(ctx, t, "", reqs, parse, fn)
}

// each is Each with the name Options.Progress reports. An item counts as
// finished when its result is known, not when fn gets it (fn waits for the
// items before it).
func each[T any](ctx context.Context, t *Teacher, name string, reqs []*Request, parse ParseFunc[T], fn func(i int, r Result[T])) {
	var done atomic.Int64
	s := stream.New().WithMaxGoroutines(2 * t.cfg.Limits.Concurrency)
	for i, req := range reqs {
		if err := ctx.Err(); err != nil {
			s.Go(func() stream.Callback {
				return func() {
					for j := i; j < len(reqs); j++ {
						fn(j, Result[T]{Err: err})
					}
				}
			})
			break
		}
		s.Go(func() stream.Callback {
			r := Generate(ctx, t, req, parse)
			if t.progress != nil {
				t.progress(name, int(done.Add(1)), len(reqs))
			}
			return func() { fn(i, r) }
		})
	}
	s.Wait()
}

// Text is the ParseFunc of free-text replies.
func Text(text string) (string, error) { return text, nil }

// Failed counts the results with an error, and how many of them were budget
// stops.
func Failed[T any](rs []Result[T]) (failed, budget int) {
	for _, r := range rs {
		if r.Err != nil {
			failed++
			if errors.Is(r.Err, ErrBudget) {
				budget++
			}
		}
	}
	return failed, budget
}

// Run is a stage's one call for a set of requests: with batch mode on, the
// uncached requests go through the provider's batch API first (name
// identifies the work for resuming, e.g. "diagnose/shard-3"); then Map
// answers everything, from the cache where the batch (or an earlier run)
// put the replies, online for the rest. A batch that cannot run (budget,
// provider error) is logged and the online pass does the work.
func Run[T any](ctx context.Context, t *Teacher, name string, reqs []*Request, parse ParseFunc[T]) []Result[T] {
	if t.cfg.Batch.Enabled {
		rep, err := t.Batch(ctx, name, reqs)
		if err != nil && ctx.Err() == nil {
			t.log.Warn("teacher batch failed; answering online", "name", name, "job", rep.ID, "err", err)
		} else if err == nil && rep.ID != "" {
			t.log.Info("teacher batch done", "name", name, "job", rep.ID, "answered", rep.Answered, "failed", rep.Failed)
		}
	}
	return mapNamed(ctx, t, name, reqs, parse)
}
