package teacher

// Text embeddings: the embed-sel baseline picks the training questions
// nearest to the difficult ones. One interface (Embedder) over the
// OpenAI-compatible embeddings API, Gemini's (Gemini API or Vertex AI), and
// whatever else a caller brings (the student's own hidden states); a cache in
// the store under EmbedCachePrefix so a restarted job pays for no text twice.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/sourcegraph/conc/pool"
	"google.golang.org/genai"

	"github.com/statjob/statjob/storage"
)

// Embedder turns texts into vectors: one per text, in order, all of one
// length.
type Embedder interface {
	Embed(ctx context.Context, texts []string) ([][]float32, error)
	// ID names the embedder and every setting that shapes its vectors
	// ("openai:text-embedding-3-small:0"); it keys the cache and enters
	// fingerprints. It never holds a key.
	ID() string
}

// EmbedConfig is an embedding endpoint, spelled and checked as the teacher
// section spells its provider settings (provider, model, base_url,
// api_key_env, project, location) and retries.
type EmbedConfig struct {
	// Provider: openai (any OpenAI-compatible /v1/embeddings), gemini or vertex.
	Provider string `yaml:"provider"`
	// Model as the provider names it ("text-embedding-3-small",
	// "gemini-embedding-001").
	Model     string `yaml:"model"`
	BaseURL   string `yaml:"base_url,omitempty"`
	APIKeyEnv string `yaml:"api_key_env,omitempty"`
	Project   string `yaml:"project,omitempty"`
	Location  string `yaml:"location,omitempty"`
	// Dimensions asks for shorter vectors where the model supports it (0:
	// the model's own).
	Dimensions int `yaml:"dimensions,omitempty"`
	// BatchSize texts go in one request (OpenAI takes up to 2048, the
	// Gemini API up to 100).
	BatchSize int `yaml:"batch_size"`
	// Concurrency is the most requests in flight.
	Concurrency int           `yaml:"concurrency"`
	Timeout     time.Duration `yaml:"timeout"`
	Retry       EmbedRetry    `yaml:"retry"`
}

// EmbedRetry is Retry without re-asks (a vector has nothing to parse).
type EmbedRetry struct {
	Attempts    int           `yaml:"attempts"`
	RateLimited int           `yaml:"rate_limited"`
	BaseDelay   time.Duration `yaml:"base_delay"`
	MaxDelay    time.Duration `yaml:"max_delay"`
}

// DefaultEmbedConfig is OpenAI's small embedding model.
func DefaultEmbedConfig() EmbedConfig {
	d := DefaultConfig()
	return EmbedConfig{Provider: ProviderOpenAI, Model: "text-embedding-3-small", BatchSize: 100,
		Concurrency: 4, Timeout: d.Timeout, Retry: EmbedRetry{Attempts: d.Retry.Attempts,
			RateLimited: d.Retry.RateLimited, BaseDelay: d.Retry.BaseDelay, MaxDelay: d.Retry.MaxDelay}}
}

// ID is the identity of the embedder c configures: provider, model and
// dimensions (the endpoint, limits and retries shape no vector).
func (c *EmbedConfig) ID() string { return fmt.Sprintf("%s:%s:%d", c.Provider, c.Model, c.Dimensions) }

// KeyEnv is the variable the key is read from ("" when none is needed).
func (c *EmbedConfig) KeyEnv() string {
	tc := c.teacherConfig()
	return tc.KeyEnv()
}

// teacherConfig is c as a teacher Config, so the provider settings are
// checked and used exactly as the teacher's are.
func (c *EmbedConfig) teacherConfig() Config {
	t := DefaultConfig()
	t.Provider, t.Model, t.BaseURL, t.APIKeyEnv = c.Provider, c.Model, c.BaseURL, c.APIKeyEnv
	t.Project, t.Location, t.Timeout = c.Project, c.Location, c.Timeout
	t.Retry = Retry{Attempts: c.Retry.Attempts, RateLimited: c.Retry.RateLimited, BaseDelay: c.Retry.BaseDelay, MaxDelay: c.Retry.MaxDelay}
	t.Limits.Concurrency = c.Concurrency
	return t
}

// Validate names the first bad field (relative to the block: "model: required").
func (c *EmbedConfig) Validate() error {
	switch {
	case c.Concurrency < 1:
		return fmt.Errorf("concurrency: %d is below 1", c.Concurrency)
	case c.BatchSize < 1:
		return fmt.Errorf("batch_size: %d is below 1", c.BatchSize)
	case c.Dimensions < 0:
		return fmt.Errorf("dimensions: %d is negative", c.Dimensions)
	}
	t := c.teacherConfig()
	if err := t.Validate(); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "teacher."))
	}
	return nil
}

// NewEmbedder returns the embedder of a validated config. opts supplies the
// transport and Google credentials as for New; Provider is ignored.
func NewEmbedder(ctx context.Context, cfg EmbedConfig, opts *Options) (Embedder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts == nil {
		opts = &Options{}
	}
	tc := cfg.teacherConfig()
	var key string
	if env := tc.KeyEnv(); env != "" && cfg.Provider != ProviderVertex {
		if key = os.Getenv(env); key == "" {
			return nil, fmt.Errorf("api_key_env %s: %w", env, errNoKey)
		}
	}
	e := &apiEmbedder{cfg: cfg, key: redactor(key), log: opts.Logger}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	hc := newHTTPClient(opts.Transport, cfg.Concurrency)
	if cfg.Provider == ProviderOpenAI {
		e.call = newOpenAI(&tc, key, hc).embed
	} else {
		g, err := newGemini(ctx, &tc, key, hc, opts.GoogleCredentials)
		if err != nil {
			return nil, err
		}
		e.call = g.embed
		// Vertex serves the newer Gemini embedding models one text per
		// request (genai refuses more).
		if cfg.Provider == ProviderVertex && (strings.Contains(cfg.Model, "gemini") && cfg.Model != "gemini-embedding-001" ||
			strings.Contains(cfg.Model, "maas")) {
			e.cfg.BatchSize = 1
		}
	}
	return e, nil
}

// apiEmbedder sends batches of texts to a provider, several at once, with
// the teacher's retry policy.
type apiEmbedder struct {
	cfg  EmbedConfig
	key  redactor
	log  *slog.Logger
	call func(ctx context.Context, texts []string, dims int) ([][]float32, error)
}

func (e *apiEmbedder) ID() string { return e.cfg.ID() }

func (e *apiEmbedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	for i, t := range texts {
		if strings.TrimSpace(t) == "" {
			return nil, fmt.Errorf("embed: text %d is empty", i)
		}
	}
	out := make([][]float32, len(texts))
	p := pool.New().WithErrors().WithContext(ctx).WithCancelOnError().WithFirstError().WithMaxGoroutines(e.cfg.Concurrency)
	for lo := 0; lo < len(texts); lo += e.cfg.BatchSize {
		hi := min(lo+e.cfg.BatchSize, len(texts))
		p.Go(func(ctx context.Context) error {
			vs, err := e.batch(ctx, texts[lo:hi])
			if err != nil {
				return fmt.Errorf("embed texts %d..%d with %s %s: %w", lo, hi-1, e.cfg.Provider, e.cfg.Model, err)
			}
			copy(out[lo:hi], vs)
			return nil
		})
	}
	if err := p.Wait(); err != nil {
		return nil, err
	}
	for i, v := range out {
		if len(v) != len(out[0]) {
			return nil, fmt.Errorf("embed: %s returned vectors of %d and %d dimensions", e.cfg.Model, len(out[0]), len(v))
		}
		if e.cfg.Dimensions > 0 && len(v) != e.cfg.Dimensions {
			return nil, fmt.Errorf("embed: text %d: %d dimensions, dimensions asks for %d", i, len(v), e.cfg.Dimensions)
		}
	}
	return out, nil
}

// batch is one request with retries: 5xx, timeouts and resets up to
// retry.attempts, 429s up to retry.rate_limited, after a backoff (or the
// provider's Retry-After).
func (e *apiEmbedder) batch(ctx context.Context, texts []string) ([][]float32, error) {
	r := e.cfg.Retry
	for attempt, limited := 1, 0; ; {
		actx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
		vs, err := e.call(actx, texts, e.cfg.Dimensions)
		cancel()
		if err == nil {
			if len(vs) != len(texts) {
				return nil, fmt.Errorf("%d vectors for %d texts", len(vs), len(texts))
			}
			return vs, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		timedOut := errors.Is(err, context.DeadlineExceeded)
		ae, is429 := rateLimited(err)
		switch {
		case is429:
			if limited++; limited > r.RateLimited {
				return nil, fmt.Errorf("rate limited %d times: %w", limited, err)
			}
		case timedOut || retryable(err):
			if attempt >= r.Attempts {
				return nil, fmt.Errorf("gave up after %d attempts: %w", attempt, err)
			}
			attempt++
		default:
			return nil, err
		}
		d := backoff(r.BaseDelay, r.MaxDelay, attempt+limited-2)
		if errors.As(err, &ae) && ae.RetryAfter > d {
			d = ae.RetryAfter
		}
		e.log.Debug("embed: retrying", "texts", len(texts), "attempt", attempt, "rate_limited", limited, "err", err)
		if err := sleep(ctx, d); err != nil {
			return nil, err
		}
	}
}

// embed calls the OpenAI-compatible /v1/embeddings endpoint; the reply's
// index puts each vector back in place.
func (m *openaiModel) embed(ctx context.Context, texts []string, dims int) ([][]float32, error) {
	p := openai.EmbeddingNewParams{Model: openai.EmbeddingModel(m.model),
		Input:          openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: texts},
		EncodingFormat: openai.EmbeddingNewParamsEncodingFormatFloat}
	if dims > 0 {
		p.Dimensions = openai.Int(int64(dims))
	}
	ctx, meta := withRespMeta(ctx)
	resp, err := m.client.Embeddings.New(ctx, p)
	if err != nil {
		return nil, apiError("openai", m.key, meta, err)
	}
	out := make([][]float32, len(texts))
	for _, d := range resp.Data {
		if d.Index < 0 || int(d.Index) >= len(texts) || out[d.Index] != nil {
			return nil, &transportError{msg: fmt.Sprintf("openai: embedding index %d is out of place for %d texts", d.Index, len(texts))}
		}
		v := make([]float32, len(d.Embedding))
		for i, x := range d.Embedding {
			v[i] = float32(x)
		}
		out[d.Index] = v
	}
	for i, v := range out {
		if v == nil {
			return nil, &transportError{msg: fmt.Sprintf("openai: no embedding for text %d of %d", i, len(texts))}
		}
	}
	return out, nil
}

// embed calls embedContent through genai: batchEmbedContents on the Gemini
// API, predict (or embedContent) on Vertex AI.
func (m *geminiModel) embed(ctx context.Context, texts []string, dims int) ([][]float32, error) {
	contents := make([]*genai.Content, len(texts))
	for i, t := range texts {
		contents[i] = genai.NewContentFromText(t, genai.RoleUser)
	}
	var cfg *genai.EmbedContentConfig
	if dims > 0 {
		cfg = &genai.EmbedContentConfig{OutputDimensionality: genai.Ptr(int32(dims))}
	}
	ctx, meta := withRespMeta(ctx)
	resp, err := m.client.Models.EmbedContent(ctx, m.model, contents, cfg)
	if err != nil {
		return nil, apiError(m.name, m.key, meta, err)
	}
	if len(resp.Embeddings) != len(texts) {
		return nil, &transportError{msg: fmt.Sprintf("%s: %d embeddings for %d texts", m.name, len(resp.Embeddings), len(texts))}
	}
	out := make([][]float32, len(texts))
	for i, e := range resp.Embeddings {
		if e == nil || len(e.Values) == 0 {
			return nil, &transportError{msg: fmt.Sprintf("%s: empty embedding for text %d", m.name, i)}
		}
		out[i] = e.Values
	}
	return out, nil
}

// EmbedCachePrefix is where vectors live in the storage root, one object
// per (embedder, text).
const EmbedCachePrefix = "cache/embed"

// EmbedCacheKey is the hex sha256 of the embedder's ID and the text.
func EmbedCacheKey(id, text string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d:%s", len(id), id)
	h.Write([]byte(text))
	return hex.EncodeToString(h.Sum(nil))
}

func embedObject(key string) string { return EmbedCachePrefix + "/" + key[:2] + "/" + key + ".json" }

// embedEntry is one cache object.
type embedEntry struct {
	Embedder string    `json:"embedder"`
	Vector   []float32 `json:"vector"`
}

// EmbedCache answers from the store what it can and sends the rest to the
// embedder it wraps, chunk texts at a time, storing each chunk's vectors as
// soon as they arrive: an interrupted run keeps what it paid for.
type EmbedCache struct {
	next  Embedder
	store storage.Store
	chunk int
	log   *slog.Logger
	// Hits and Misses count texts (a text asked twice in one call counts once).
	hits, misses atomic.Int64
}

// NewEmbedCache wraps next with a cache in store; chunk (at least 1) is how
// many uncached texts go to next at once; log may be nil.
func NewEmbedCache(next Embedder, store storage.Store, chunk int, log *slog.Logger) *EmbedCache {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &EmbedCache{next: next, store: store, chunk: max(chunk, 1), log: log}
}

// ID is the wrapped embedder's.
func (c *EmbedCache) ID() string { return c.next.ID() }

// Hits and Misses are the texts found in and missing from the cache so far.
func (c *EmbedCache) Hits() int64   { return c.hits.Load() }
func (c *EmbedCache) Misses() int64 { return c.misses.Load() }

// embedLookups bounds the cache reads in flight (object stores answer each
// in tens of milliseconds).
const embedLookups = 32

func (c *EmbedCache) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	id := c.next.ID()
	// Distinct texts, first-seen order.
	slot := map[string]int{}
	var uniq []string
	for _, t := range texts {
		if _, ok := slot[t]; !ok {
			slot[t] = len(uniq)
			uniq = append(uniq, t)
		}
	}
	vecs := make([][]float32, len(uniq))
	damaged := make([]bool, len(uniq))
	p := pool.New().WithErrors().WithContext(ctx).WithFirstError().WithMaxGoroutines(embedLookups)
	for i, t := range uniq {
		p.Go(func(ctx context.Context) error {
			v, err := c.lookup(ctx, id, t)
			switch {
			case err == nil:
				vecs[i] = v
			case errors.Is(err, storage.ErrNotExist):
			case ctx.Err() != nil:
				return ctx.Err()
			default:
				// An unreadable entry costs one embedding, not the stage.
				damaged[i] = true
				c.log.Warn("embedding cache read failed; embedding again", "err", err)
			}
			return nil
		})
	}
	if err := p.Wait(); err != nil {
		return nil, err
	}
	var missing []int
	for i, v := range vecs {
		if v == nil {
			missing = append(missing, i)
		}
	}
	c.hits.Add(int64(len(uniq) - len(missing)))
	c.misses.Add(int64(len(missing)))
	for lo := 0; lo < len(missing); lo += c.chunk {
		part := missing[lo:min(lo+c.chunk, len(missing))]
		batch := make([]string, len(part))
		for k, i := range part {
			batch[k] = uniq[i]
		}
		vs, err := c.next.Embed(ctx, batch)
		if err != nil {
			return nil, err
		}
		if len(vs) != len(batch) {
			return nil, fmt.Errorf("embed: %s returned %d vectors for %d texts", id, len(vs), len(batch))
		}
		w := pool.New().WithErrors().WithMaxGoroutines(embedLookups)
		for k, i := range part {
			vecs[i] = vs[k]
			w.Go(func() error {
				// Paid for: store it even when the stage is being cancelled.
				wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cacheWriteTimeout)
				defer cancel()
				return c.put(wctx, id, uniq[i], vs[k], damaged[i])
			})
		}
		if err := w.Wait(); err != nil {
			c.log.Warn("embedding cache write failed", "err", err)
		}
		c.log.Info("embedded", "embedder", id, "done", lo+len(part), "of", len(missing), "cached before", len(uniq)-len(missing))
	}
	out := make([][]float32, len(texts))
	for i, t := range texts {
		out[i] = vecs[slot[t]]
	}
	return out, nil
}

func (c *EmbedCache) lookup(ctx context.Context, id, text string) ([]float32, error) {
	key := embedObject(EmbedCacheKey(id, text))
	b, err := readAll(ctx, c.store, key)
	if err != nil {
		return nil, err
	}
	var e embedEntry
	if err := json.Unmarshal(b, &e); err != nil || len(e.Vector) == 0 || e.Embedder != id {
		return nil, fmt.Errorf("%s: %w", c.store.URI(key), errDamaged)
	}
	return e.Vector, nil
}

func (c *EmbedCache) put(ctx context.Context, id, text string, v []float32, replace bool) error {
	b, err := json.Marshal(embedEntry{Embedder: id, Vector: v})
	if err != nil {
		return err
	}
	key := embedObject(EmbedCacheKey(id, text))
	if replace {
		_, err = c.store.Put(ctx, key, bytes.NewReader(b), storage.PutOptions{ContentType: "application/json"})
		return err
	}
	return putIfAbsent(ctx, c.store, key, b)
}
