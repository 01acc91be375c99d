package teacher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// retrier sends a call again after 5xx, timeouts and resets, with
// exponential backoff and full jitter. Errors that cannot improve (400, 401,
// 403, 404) return at once; 429s go up to the pacer.
type retrier struct {
	log       *slog.Logger
	next      Model
	attempts  int
	base, max time.Duration
	timeout   time.Duration
	stats     *counters
	// gate, when set, is passed before every retry (the pacer's RPM/TPM).
	gate func(ctx context.Context, tokens int) error
	// lost, when set, books an attempt that timed out (the budget charges
	// it); its error ends the call.
	lost func(req *Request) error
}

// attemptContext is the context of one attempt: it ends at the attempt's
// timeout or ctx's deadline, but not when ctx is cancelled, so a call the
// provider is already working on (and will bill) finishes and reaches the
// cache; cancellation only stops retries and new calls.
func (r *retrier) attemptContext(ctx context.Context) (context.Context, context.CancelFunc) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout)
	if d, ok := ctx.Deadline(); ok {
		dctx, dcancel := context.WithDeadline(actx, d)
		return dctx, func() { dcancel(); cancel() }
	}
	return actx, cancel
}

func (r *retrier) Call(ctx context.Context, req *Request) (*Reply, error) {
	for attempt := 1; ; attempt++ {
		actx, cancel := r.attemptContext(ctx)
		reply, err := r.next.Call(actx, req)
		cancel()
		r.stats.attempts.Add(1)
		if err == nil {
			r.stats.inputTokens.Add(int64(reply.Usage.Input))
			r.stats.outputTokens.Add(int64(reply.Usage.Output))
			return reply, nil
		}
		timedOut := errors.Is(err, context.DeadlineExceeded)
		var lostErr error
		if timedOut && r.lost != nil {
			lostErr = r.lost(req)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if timedOut {
			err = fmt.Errorf("attempt timed out after %v: %w", r.timeout, err)
		}
		if lostErr != nil {
			return nil, lostErr
		}
		if !timedOut && !retryable(err) {
			return nil, err
		}
		if attempt >= r.attempts {
			return nil, fmt.Errorf("gave up after %d attempts: %w", attempt, err)
		}
		r.stats.retries.Add(1)
		r.log.Debug("teacher: retrying", "prompt", req.Prompt, "sample", req.Sample, "attempt", attempt, "err", err)
		d := backoff(r.base, r.max, attempt-1)
		var ae *APIError
		if errors.As(err, &ae) && ae.RetryAfter > d {
			d = ae.RetryAfter
		}
		if err := sleep(ctx, d); err != nil {
			return nil, err
		}
		if r.gate != nil {
			if err := r.gate(ctx, estimateInput(req)+req.Params.MaxTokens); err != nil {
				return nil, err
			}
		}
	}
}
