package teacher

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeProvider is an in-memory model for tests on the fake clock of a
// synctest bubble: it records when each call started and how many were in
// flight, takes latency of fake time, and answers what answer says.
type fakeProvider struct {
	latency  time.Duration
	answer   func(n int, now time.Time) (*Reply, error)
	mu       sync.Mutex
	starts   []time.Time
	inflight int
	peak     []int // in flight at each call's start
}

func (f *fakeProvider) Call(ctx context.Context, req *Request) (*Reply, error) {
	f.mu.Lock()
	n := len(f.starts)
	f.starts = append(f.starts, time.Now())
	f.inflight++
	f.peak = append(f.peak, f.inflight)
	f.mu.Unlock()
	defer func() { f.mu.Lock(); f.inflight--; f.mu.Unlock() }()
	if err := sleep(ctx, f.latency); err != nil {
		return nil, err
	}
	if f.answer != nil {
		return f.answer(n, time.Now())
	}
	return &Reply{Text: "ok", Usage: Usage{Input: 10, Output: 10}, Finish: FinishStop}, nil
}

func pacedTeacher(t *testing.T, cfg Config, p *fakeProvider) *Teacher {
	t.Helper()
	cfg.Cache = false
	tc, err := New(context.Background(), cfg, nil, &Options{Provider: p})
	if err != nil {
		t.Fatal(err)
	}
	return tc
}

// callAll calls every request at once from its own goroutine. (Map is not
// used inside synctest bubbles: conc's stream pools its channels across
// calls, and a channel made in one bubble must not be used in another.)
func callAll(tc *Teacher, reqs []*Request) []error {
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Go(func() { _, errs[i] = tc.Call(context.Background(), r) })
	}
	wg.Wait()
	return errs
}

func countErrs(errs []error) int {
	n := 0
	for _, e := range errs {
		if e != nil {
			n++
		}
	}
	return n
}

func requests(n, maxTokens int) []*Request {
	var reqs []*Request
	for i := range n {
		r := userReq("q"+strconv.Itoa(i), 0)
		r.Params.MaxTokens = maxTokens
		reqs = append(reqs, r)
	}
	return reqs
}

func TestPacingHoldsRPM(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(ProviderOpenAI, "")
		cfg.Limits = Limits{Concurrency: 16, RPM: 120}
		p := &fakeProvider{latency: 50 * time.Millisecond}
		tc := pacedTeacher(t, cfg, p)
		start := time.Now()
		if f := countErrs(callAll(tc, requests(41, 10))); f != 0 {
			t.Fatalf("%d failed", f)
		}
		// 120 RPM = one call per 500 ms: 41 calls take 20 s of (fake) time.
		for i := 1; i < len(p.starts); i++ {
			if gap := p.starts[i].Sub(p.starts[i-1]); gap < 500*time.Millisecond-time.Microsecond {
				t.Fatalf("calls %d and %d %v apart, want ≥ 500ms", i-1, i, gap)
			}
		}
		if el := time.Since(start); el < 20*time.Second || el > 21*time.Second {
			t.Fatalf("41 calls at 120 RPM took %v, want 20s", el)
		}
	})
}

// Retries are requests too: a call that fails with 5xx waits for the RPM
// bucket before it is sent again.
func TestPacingCountsRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(ProviderOpenAI, "")
		cfg.Limits = Limits{Concurrency: 4, RPM: 60}
		p := &fakeProvider{answer: func(n int, _ time.Time) (*Reply, error) {
			if n%2 == 0 {
				return nil, &APIError{Status: 500, Message: "flaky"}
			}
			return &Reply{Text: "ok", Finish: FinishStop}, nil
		}}
		tc := pacedTeacher(t, cfg, p)
		callAll(tc, requests(5, 10))
		if len(p.starts) != 10 {
			t.Fatalf("%d requests, want 10 (5 calls, each retried once)", len(p.starts))
		}
		for i := 1; i < len(p.starts); i++ {
			// (x/time/rate's float arithmetic may come in a nanosecond early)
			if gap := p.starts[i].Sub(p.starts[i-1]); gap < time.Second-time.Microsecond {
				t.Fatalf("requests %d and %d %v apart at 60 RPM", i-1, i, gap)
			}
		}
	})
}

func TestPacingHoldsTPM(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(ProviderOpenAI, "")
		cfg.Limits = Limits{Concurrency: 16, TPM: 12000}
		p := &fakeProvider{}
		tc := pacedTeacher(t, cfg, p)
		start := time.Now()
		// Each call reserves ~1000 tokens (input estimate + 990 max tokens);
		// the bucket holds a minute's worth (12) and refills 200/s.
		callAll(tc, requests(24, 990))
		el := time.Since(start)
		if el < 55*time.Second || el > 65*time.Second {
			t.Fatalf("24 calls of ~1000 tokens at 12000 TPM took %v, want about 60s", el)
		}
	})
}

// On 429 the pacer stops everyone until Retry-After, halves the concurrency
// limit once per wave, and grows it back as calls succeed.
func TestPacingBacksOffAndRecoversOn429(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(ProviderOpenAI, "")
		cfg.Limits = Limits{Concurrency: 16}
		var start time.Time
		p := &fakeProvider{latency: 100 * time.Millisecond}
		p.answer = func(n int, now time.Time) (*Reply, error) {
			if now.Sub(start) < time.Second {
				return nil, &APIError{Provider: "fake", Status: 429, RetryAfter: 10 * time.Second, Message: "slow down"}
			}
			return &Reply{Text: "ok", Finish: FinishStop}, nil
		}
		tc := pacedTeacher(t, cfg, p)
		start = time.Now()
		done := make(chan []error)
		go func() { done <- callAll(tc, requests(400, 10)) }()

		time.Sleep(2 * time.Second)
		synctest.Wait()
		st := tc.Stats()
		if st.RateLimited != 16 || st.Concurrency != 8 {
			t.Fatalf("after the 429 wave: rate limited %d, limit %v; want 16 and 8 (halved once)", st.RateLimited, st.Concurrency)
		}
		if f := countErrs(<-done); f != 0 {
			t.Fatalf("%d failed", f)
		}
		for i, s := range p.starts {
			if d := s.Sub(start); d > 100*time.Millisecond && d < 10100*time.Millisecond {
				t.Fatalf("call %d started at %v, inside the Retry-After pause", i, d)
			}
		}
		// Right after the pause at most 8 run at once; by the end, 16 again.
		if p.peak[16] > 8 {
			t.Fatalf("%d in flight right after the 429s, want ≤ 8", p.peak[16])
		}
		late := slices.Max(p.peak[len(p.peak)-50:])
		if st := tc.Stats(); st.Concurrency != 16 || late != 16 {
			t.Fatalf("limit %v, most in flight late %d: did not recover to 16", st.Concurrency, late)
		}
	})
}

// A 429 without Retry-After backs off exponentially; after retry.rate_limited
// of them the call fails with the provider's error.
func TestPacingGivesUpAfterRateLimitedLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(ProviderOpenAI, "")
		cfg.Limits = Limits{Concurrency: 1}
		cfg.Retry.RateLimited = 3
		cfg.Retry.BaseDelay, cfg.Retry.MaxDelay = time.Second, 4*time.Second
		p := &fakeProvider{answer: func(int, time.Time) (*Reply, error) {
			return nil, &APIError{Provider: "fake", Status: 429, Message: "quota"}
		}}
		tc := pacedTeacher(t, cfg, p)
		start := time.Now()
		_, err := tc.Call(context.Background(), userReq("q", 0))
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != 429 || len(p.starts) != 4 {
			t.Fatalf("err %v after %d calls; want the 429 after 4", err, len(p.starts))
		}
		if el := time.Since(start); el > 1*time.Second+2*time.Second+4*time.Second {
			t.Fatalf("backoff took %v, more than 1+2+4 s", el)
		}
	})
}

func TestRetryBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(ProviderOpenAI, "")
		cfg.Retry.BaseDelay, cfg.Retry.MaxDelay = time.Second, 8*time.Second
		fails := []error{
			&APIError{Status: 500, Message: "boom"},
			&transportError{msg: "connection reset"},
			&APIError{Status: 503, RetryAfter: 30 * time.Second, Message: "maintenance"},
		}
		p := &fakeProvider{answer: func(n int, _ time.Time) (*Reply, error) {
			if n < len(fails) {
				return nil, fails[n]
			}
			return &Reply{Text: "ok", Finish: FinishStop}, nil
		}}
		tc := pacedTeacher(t, cfg, p)
		start := time.Now()
		if _, err := tc.Call(context.Background(), userReq("q", 0)); err != nil {
			t.Fatal(err)
		}
		// Backoff before the 3rd attempt is ≤ 1+2 s; the 503 asks for 30 s.
		gap := p.starts[3].Sub(p.starts[2])
		if gap < 30*time.Second || gap > 31*time.Second || p.starts[2].Sub(start) > 3*time.Second {
			t.Fatalf("attempt times %v", p.starts)
		}
		if tc.Stats().Retries != 3 {
			t.Fatalf("retries %d", tc.Stats().Retries)
		}
	})
}

func TestRetryPerAttemptTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(ProviderOpenAI, "")
		cfg.Timeout = 10 * time.Second
		p := &fakeProvider{}
		p.answer = func(n int, _ time.Time) (*Reply, error) { return &Reply{Text: "ok", Finish: FinishStop}, nil }
		p.latency = time.Hour // every attempt hangs past its deadline
		cfg.Retry.Attempts = 2
		tc := pacedTeacher(t, cfg, p)
		start := time.Now()
		_, err := tc.Call(context.Background(), userReq("q", 0))
		if !errors.Is(err, context.DeadlineExceeded) || len(p.starts) != 2 {
			t.Fatalf("err %v after %d attempts", err, len(p.starts))
		}
		if el := time.Since(start); el < 20*time.Second || el > 21*time.Second {
			t.Fatalf("two 10 s attempts took %v", el)
		}
	})
}

// When a reply's rate-limit headers say the quota is used up, the next call
// waits for the reset instead of collecting a 429.
func TestPacingHonoursRateLimitHeaders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(ProviderOpenAI, "")
		cfg.Limits = Limits{Concurrency: 1}
		p := &fakeProvider{}
		p.answer = func(n int, _ time.Time) (*Reply, error) { return &Reply{Text: "ok", Finish: FinishStop}, nil }
		tc := pacedTeacher(t, cfg, p)
		headers := ModelFunc(func(ctx context.Context, req *Request) (*Reply, error) {
			_, m := withRespMeta(ctx)
			h := http.Header{}
			if len(p.starts) == 0 {
				h.Set("x-ratelimit-remaining-requests", "0")
				h.Set("x-ratelimit-reset-requests", "6m0s")
			}
			m.set(200, h)
			return p.Call(ctx, req)
		})
		tc.pacer.next.(*retrier).next = headers
		start := time.Now()
		callAll(tc, requests(2, 10))
		if gap := p.starts[1].Sub(start); gap != 6*time.Minute {
			t.Fatalf("second call after %v, want the 6m reset", gap)
		}
	})
}

func TestRetryAfterHeaders(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		h    map[string]string
		want time.Duration
	}{
		{map[string]string{"Retry-After": "12"}, 12 * time.Second},
		{map[string]string{"Retry-After": "0.5"}, 500 * time.Millisecond},
		{map[string]string{"Retry-After": now.Add(90 * time.Second).Format(http.TimeFormat)}, 90 * time.Second},
		{map[string]string{"retry-after-ms": "250", "Retry-After": "9"}, 250 * time.Millisecond},
		{map[string]string{"x-ratelimit-reset-requests": "1m30s", "x-ratelimit-reset-tokens": "6s"}, 90 * time.Second},
		{map[string]string{"Retry-After": "soon"}, 0},
		{nil, 0},
	} {
		h := http.Header{}
		for k, v := range c.h {
			h.Set(k, v)
		}
		if got := retryAfter(h, now); got != c.want {
			t.Errorf("%v: %v, want %v", c.h, got, c.want)
		}
	}
}

// Cancelling stops new calls and retries, but a call at the provider runs
// on until it is answered (its reply returned), its attempt times out, or
// the context's own deadline passes.
func TestCancelLetsInFlightCallsFinish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(ProviderOpenAI, "")
		cfg.Limits = Limits{Concurrency: 1}
		cfg.Timeout = 10 * time.Second
		cfg.Retry.Attempts = 3
		p := &fakeProvider{latency: time.Second}
		tc := pacedTeacher(t, cfg, p)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(500*time.Millisecond, cancel)
		start := time.Now()
		errs := make([]error, 3)
		var wg sync.WaitGroup
		for i, r := range requests(3, 10) {
			wg.Go(func() { _, errs[i] = tc.Call(ctx, r) })
		}
		wg.Wait()
		if len(p.starts) != 1 || countErrs(errs) != 2 || time.Since(start) != time.Second {
			t.Fatalf("%d calls, errors %v after %v; want the one in flight answered at 1s, two never started",
				len(p.starts), errs, time.Since(start))
		}

		// A hung attempt is abandoned at its timeout, and not retried.
		p2 := &fakeProvider{latency: time.Hour}
		tc = pacedTeacher(t, cfg, p2)
		ctx, cancel = context.WithCancel(context.Background())
		time.AfterFunc(500*time.Millisecond, cancel)
		start = time.Now()
		if _, err := tc.Call(ctx, userReq("q", 0)); !errors.Is(err, context.Canceled) ||
			time.Since(start) != 10*time.Second || len(p2.starts) != 1 {
			t.Fatalf("err %v after %v and %d attempts; want canceled at the 10s attempt timeout, 1 attempt",
				err, time.Since(start), len(p2.starts))
		}
		// The context's deadline ends it sooner.
		ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		start = time.Now()
		if _, err := tc.Call(ctx, userReq("q", 0)); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 2*time.Second {
			t.Fatalf("err %v after %v; want the 2s deadline", err, time.Since(start))
		}
	})
}

// An attempt that times out may have been billed: the budget charges its
// worst case, and a retry happens only while the budget can still hold it.
func TestBudgetChargesTimedOutAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(ProviderOpenAI, "")
		cfg.Timeout = 10 * time.Second
		cfg.Retry.Attempts = 5
		req := userReq("q", 0)
		worst := int64(estimateInput(req) + req.Params.MaxTokens)
		cfg.Budget.Tokens = 2*worst + worst/2 // room for two lost attempts, not three
		p := &fakeProvider{latency: time.Hour}
		tc := pacedTeacher(t, cfg, p)
		_, err := tc.Call(context.Background(), req)
		st := tc.Stats()
		if !errors.Is(err, ErrBudget) || len(p.starts) != 2 || st.Budget.SpentTokens != 2*worst {
			t.Fatalf("err %v after %d attempts, spent %d; want ErrBudget after 2 attempts charged %d each",
				err, len(p.starts), st.Budget.SpentTokens, worst)
		}
	})
}
