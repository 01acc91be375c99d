package teacher

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// pacer keeps calls within the provider's limits: requests and tokens per
// minute (token buckets), an adaptive concurrency limit, and the pauses the
// provider asks for on 429. A 429 is handled here, not in retry: it lowers
// the concurrency limit, pauses every caller until Retry-After, and sends the
// call again.
type pacer struct {
	log         *slog.Logger
	next        Model
	rpm, tpm    *rate.Limiter // nil: unlimited
	limit       *aimd
	maxLimited  int
	base, max   time.Duration
	stats       *counters
	mu          sync.Mutex
	pausedUntil time.Time
}

func newPacer(next Model, cfg *Config, stats *counters, log *slog.Logger) *pacer {
	p := &pacer{log: log, next: next, limit: newAIMD(cfg.Limits.Concurrency), maxLimited: cfg.Retry.RateLimited,
		base: cfg.Retry.BaseDelay, max: cfg.Retry.MaxDelay, stats: stats}
	if r := cfg.Limits.RPM; r > 0 {
		// A burst of one: requests are spread evenly over the minute.
		p.rpm = rate.NewLimiter(rate.Limit(float64(r)/60), 1)
	}
	if t := cfg.Limits.TPM; t > 0 {
		p.tpm = rate.NewLimiter(rate.Limit(float64(t)/60), t)
	}
	return p
}

func (p *pacer) pause(d time.Duration) {
	until := time.Now().Add(d)
	p.mu.Lock()
	if until.After(p.pausedUntil) {
		p.pausedUntil = until
	}
	p.mu.Unlock()
}

func (p *pacer) waitPause(ctx context.Context) error {
	p.mu.Lock()
	d := time.Until(p.pausedUntil)
	p.mu.Unlock()
	return sleep(ctx, d)
}

// gate waits out a pause and takes a request and the call's tokens from the
// per-minute buckets. The retrier passes its retries through it too, so
// retries count against RPM and TPM like first attempts.
func (p *pacer) gate(ctx context.Context, tokens int) error {
	if err := p.waitPause(ctx); err != nil {
		return err
	}
	if p.rpm != nil {
		if err := p.rpm.Wait(ctx); err != nil {
			return err
		}
	}
	if p.tpm != nil {
		return p.tpm.WaitN(ctx, min(tokens, p.tpm.Burst()))
	}
	return nil
}

func (p *pacer) Call(ctx context.Context, req *Request) (*Reply, error) {
	tokens := estimateInput(req) + req.Params.MaxTokens
	for limited := 0; ; limited++ {
		ticket, err := p.limit.acquire(ctx)
		if err != nil {
			return nil, err
		}
		if err := p.gate(ctx, tokens); err != nil {
			p.limit.release(ticket, false)
			return nil, err
		}
		mctx, meta := withRespMeta(ctx)
		r, err := p.next.Call(mctx, req)
		if _, h := meta.get(); err == nil {
			// The provider says the next request would be refused: wait
			// for its reset instead of collecting a 429.
			if d := exhausted(h, time.Now()); d > 0 {
				p.pause(d)
			}
		}
		ae, is429 := rateLimited(err)
		if !is429 {
			p.limit.release(ticket, err == nil)
			return r, err
		}
		p.stats.rateLimited.Add(1)
		p.log.Debug("teacher: rate limited", "retry_after", ae.RetryAfter, "limit", p.limit.current(), "err", err)
		p.limit.backOff(ticket)
		d := ae.RetryAfter
		if d <= 0 {
			d = backoff(p.base, p.max, limited)
		}
		p.pause(d)
		if limited >= p.maxLimited {
			return nil, err
		}
	}
}

// aimd is a concurrency limit that halves when the provider pushes back and
// grows by one per limit's worth of successes (additive increase,
// multiplicative decrease). Waiters are served first come, first served,
// one per freed slot.
type aimd struct {
	mu       sync.Mutex
	limit    float64
	ceiling  float64
	inflight int
	epoch    int // bumped at each decrease
	waiters  []chan int
}

func newAIMD(ceiling int) *aimd {
	return &aimd{limit: float64(ceiling), ceiling: float64(ceiling)}
}

// acquire waits for a slot; the ticket is the epoch the call started in.
func (a *aimd) acquire(ctx context.Context) (int, error) {
	a.mu.Lock()
	if a.inflight < int(a.limit) && len(a.waiters) == 0 {
		a.inflight++
		e := a.epoch
		a.mu.Unlock()
		return e, nil
	}
	ch := make(chan int, 1)
	a.waiters = append(a.waiters, ch)
	a.mu.Unlock()
	select {
	case e := <-ch:
		return e, nil
	case <-ctx.Done():
		a.mu.Lock()
		defer a.mu.Unlock()
		if i := slices.Index(a.waiters, ch); i >= 0 {
			a.waiters = slices.Delete(a.waiters, i, i+1)
			return 0, ctx.Err()
		}
		// Granted while giving up: hand the slot on.
		<-ch
		a.inflight--
		a.grant()
		return 0, ctx.Err()
	}
}

// grant hands free slots to waiters, oldest first. Called with mu held.
func (a *aimd) grant() {
	for a.inflight < int(a.limit) && len(a.waiters) > 0 {
		ch := a.waiters[0]
		a.waiters = a.waiters[1:]
		a.inflight++
		ch <- a.epoch
	}
}

// release frees the slot; a success raises the limit by 1/limit.
func (a *aimd) release(ticket int, ok bool) {
	a.mu.Lock()
	a.inflight--
	if ok {
		a.limit = min(a.ceiling, a.limit+1/a.limit)
	}
	a.grant()
	a.mu.Unlock()
}

// backOff frees the slot after a 429 and halves the limit, once for all the
// calls that were already in flight when the provider pushed back.
func (a *aimd) backOff(ticket int) {
	a.mu.Lock()
	a.inflight--
	if ticket == a.epoch {
		a.limit = max(1, a.limit/2)
		a.epoch++
	}
	a.grant()
	a.mu.Unlock()
}

// current is the limit now (for Stats and tests).
func (a *aimd) current() float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.limit
}

// backoff is exponential with full jitter: uniform in [0, min(max, base·2^n)].
func backoff(base, maxDelay time.Duration, n int) time.Duration {
	d := maxDelay
	if n < 30 && base<<n < maxDelay {
		d = base << n
	}
	return time.Duration(rand.Int64N(int64(d) + 1))
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
