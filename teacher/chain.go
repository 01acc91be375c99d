package teacher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"

	"cloud.google.com/go/auth"

	"github.com/statjob/statjob/storage"
)

// Options are what a Config cannot say: where logs go, and the test hooks.
type Options struct {
	// Logger for warnings (cache trouble, batch progress); nil discards.
	Logger *slog.Logger
	// Transport under the SDKs' HTTP client; nil uses a pooled default.
	Transport http.RoundTripper
	// GoogleCredentials for Vertex AI; nil uses Application Default Credentials.
	GoogleCredentials *auth.Credentials
	// Provider replaces the SDK provider at the bottom of the chain (tests,
	// or a model the package does not know).
	Provider Model
	// Progress, when set, is called each time an item of a fan-out (Each,
	// Map, Run) is finished, answered or failed, with the fan-out's name
	// (Run's name; "" for Each and Map), the items finished so far and the
	// fan-out's size. It is called from the fan-out's goroutines, several
	// at once, so it must be safe for concurrent use; done counts up to
	// total, though calls may arrive slightly out of order.
	Progress func(name string, done, total int)
	// Payer names the work that pays for these calls, e.g. "<run>/<stage>".
	// Every reply it pays for is cached with this name, and a reply the
	// same payer paid for before (a restarted stage reading its replies
	// back from the cache) counts against the budget again, once, at the
	// usage it was billed: the budget holds across restarts, not per
	// process. Replies other work paid for stay free. Empty: no reply read
	// from the cache counts. (An attempt that timed out before a restart,
	// charged its worst case then, is not carried: it left no reply.)
	Payer string
	// Spent is spending from before this Teacher that Payer cannot see
	// (e.g. with the cache off): it starts the budget's count.
	Spent BudgetState
}

// Teacher is a configured teacher model: the wrapper chain over a provider,
// its cache in a Store, and counters for the stage's manifest.
type Teacher struct {
	cfg      Config
	store    storage.Store
	log      *slog.Logger
	stats    *counters
	chain    Model // cache → budget → pacing → retry → provider
	budget   *budget
	pacer    *pacer
	cache    *cache // nil when the cache is off
	provider Model
	key      redactor
	hc       *http.Client
	creds    *auth.Credentials
	progress func(name string, done, total int) // Options.Progress
	// collected: batch records whose results this process has read.
	collected sync.Map
}

// New builds a Teacher from a validated Config. The store holds the response
// cache and batch files; it may be nil when cfg.Cache is false and batch mode
// is off.
func New(ctx context.Context, cfg Config, store storage.Store, opts *Options) (*Teacher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts == nil {
		opts = &Options{}
	}
	if (cfg.Cache || cfg.Batch.Enabled) && store == nil {
		return nil, fmt.Errorf("teacher: the response cache and batch mode need a store")
	}
	t := &Teacher{cfg: cfg, store: store, log: opts.Logger, stats: &counters{}, creds: opts.GoogleCredentials,
		progress: opts.Progress}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	var key string
	if env := cfg.KeyEnv(); env != "" && cfg.Provider != ProviderVertex {
		key = os.Getenv(env)
		if key == "" && opts.Provider == nil {
			return nil, fmt.Errorf("teacher: api_key_env %s: %w", env, errNoKey)
		}
	}
	t.key = redactor(key)
	t.hc = newHTTPClient(opts.Transport, cfg.Limits.Concurrency)
	switch {
	case opts.Provider != nil:
		t.provider = opts.Provider
	case cfg.Provider == ProviderOpenAI:
		t.provider = newOpenAI(&cfg, key, t.hc)
	default:
		g, err := newGemini(ctx, &cfg, key, t.hc, opts.GoogleCredentials)
		if err != nil {
			return nil, err
		}
		t.provider = g
	}
	retry := &retrier{log: t.log, next: t.provider, attempts: cfg.Retry.Attempts, base: cfg.Retry.BaseDelay,
		max: cfg.Retry.MaxDelay, timeout: cfg.Timeout, stats: t.stats}
	t.pacer = newPacer(retry, &t.cfg, t.stats, t.log)
	retry.gate = t.pacer.gate
	var m Model
	t.budget = &budget{next: t.pacer, cfg: &t.cfg, stats: t.stats,
		spentTok: opts.Spent.SpentTokens, spentUSD: opts.Spent.SpentUSD}
	retry.lost = t.budget.lostAttempt
	m = t.budget
	if cfg.Cache {
		t.cache = &cache{next: m, store: store, provider: cfg.Provider, model: cfg.Model, payer: opts.Payer,
			budget: t.budget, stats: t.stats, log: t.log}
		m = t.cache
	}
	t.chain = m
	return t, nil
}

// Config returns the Teacher's settings.
func (t *Teacher) Config() Config { return t.cfg }

// Call sends one request through the whole chain and returns the raw reply.
// A truncated reply is returned with its Finish set to FinishLength. Once
// ctx is cancelled no call starts; a call already at the provider runs until
// it is answered, its attempt times out or ctx's deadline passes, and its
// reply is cached and returned.
func (t *Teacher) Call(ctx context.Context, req *Request) (*Reply, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if req.Params.MaxTokens <= 0 {
		return nil, fmt.Errorf("teacher: request %q sample %d: params.max_tokens must be positive (the budget reserves it)", req.Prompt, req.Sample)
	}
	r, err := t.chain.Call(ctx, req)
	var ae *APIError
	if errors.As(err, &ae) && (ae.Status == 401 || ae.Status == 403) {
		return nil, fmt.Errorf("%w (credentials: %s)", err, t.credentials())
	}
	return r, err
}

// credentials says where the credentials came from, for a refusal's message
// (never the key itself).
func (t *Teacher) credentials() string {
	switch env := t.cfg.KeyEnv(); {
	case t.cfg.Provider == ProviderVertex && t.creds != nil:
		return "the Google credentials given in Options, project " + t.cfg.Project
	case t.cfg.Provider == ProviderVertex:
		return "Application Default Credentials, project " + t.cfg.Project
	case env != "":
		return "the key in $" + env
	}
	return "no key (self-hosted base_url; set teacher.api_key_env if the server wants one)"
}

// counters are updated by the wrappers; Stats snapshots them.
type counters struct {
	cacheHits, cacheMisses, cacheFailures, cacheWriteErrors atomic.Int64
	attempts, retries, rateLimited                          atomic.Int64
	reasks, malformed, truncated, budgetDenied              atomic.Int64
	carried                                                 atomic.Int64
	inputTokens, outputTokens                               atomic.Int64
	batchItems, batchFailed                                 atomic.Int64
}

// Stats are the teacher's counters, for a stage's manifest metrics.
type Stats struct {
	CacheHits     int64 `json:"cache_hits"`
	CacheMisses   int64 `json:"cache_misses"`
	CacheFailures int64 `json:"cache_failures"` // misses whose call failed
	CacheWriteErr int64 `json:"cache_write_errors,omitempty"`
	Attempts      int64 `json:"attempts"` // provider requests sent online
	Retries       int64 `json:"retries"`
	RateLimited   int64 `json:"rate_limited"` // 429s met
	Reasks        int64 `json:"reasks"`
	Malformed     int64 `json:"malformed"` // items failed: did not parse after re-asks
	Truncated     int64 `json:"truncated"`
	BudgetDenied  int64 `json:"budget_denied"`
	InputTokens   int64 `json:"input_tokens"` // paid by this work: online and batch, and Carried
	// Carried are cached replies this work (Options.Payer) paid for
	// before a restart, counted in the tokens and the budget again.
	Carried      int64 `json:"carried,omitempty"`
	OutputTokens int64 `json:"output_tokens"`
	BatchItems   int64 `json:"batch_items,omitempty"`
	BatchFailed  int64 `json:"batch_failed,omitempty"`
	// Concurrency is the adaptive limit now.
	Concurrency float64     `json:"concurrency"`
	Budget      BudgetState `json:"budget"`
}

// Stats snapshots the counters.
func (t *Teacher) Stats() Stats {
	c := t.stats
	return Stats{
		CacheHits: c.cacheHits.Load(), CacheMisses: c.cacheMisses.Load(), CacheFailures: c.cacheFailures.Load(),
		CacheWriteErr: c.cacheWriteErrors.Load(), Attempts: c.attempts.Load(), Retries: c.retries.Load(),
		RateLimited: c.rateLimited.Load(), Reasks: c.reasks.Load(), Malformed: c.malformed.Load(),
		Truncated: c.truncated.Load(), BudgetDenied: c.budgetDenied.Load(), Carried: c.carried.Load(),
		InputTokens: c.inputTokens.Load(), OutputTokens: c.outputTokens.Load(),
		BatchItems: c.batchItems.Load(), BatchFailed: c.batchFailed.Load(),
		Concurrency: t.pacer.limit.current(), Budget: t.budget.state(),
	}
}
