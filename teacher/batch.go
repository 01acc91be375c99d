package teacher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sourcegraph/conc/pool"

	"github.com/statjob/statjob/storage"
)

// Batch mode: the calls a stage is about to make go to the provider's batch
// API first (cheaper, no rate limits), their replies land in the response
// cache, and the online pass that follows (Map) finds them there and only
// calls the model for the items the batch failed.

// batchItem is one call inside a batch, named by its cache key.
type batchItem struct {
	key string
	req *Request
}

// batchResult is one item's outcome; Err for items the batch did not answer.
type batchResult struct {
	key   string
	reply *Reply
	err   error
}

// batcher is what a provider implements for batch mode.
type batcher interface {
	// submit creates the batch job, marked with tag, and returns its id. dir
	// is a folder in the store the provider may use for input and output
	// files.
	submit(ctx context.Context, store storage.Store, dir, tag, name string, items []batchItem) (string, error)
	// find returns the id of a job submit created with tag, or "" when there
	// is none.
	find(ctx context.Context, tag, name string) (string, error)
	// poll reports whether the job has finished (successfully or not).
	poll(ctx context.Context, id string) (done bool, state string, err error)
	// results calls fn for every item the finished job holds.
	results(ctx context.Context, store storage.Store, dir, id string, fn func(batchResult)) error
}

// batchRecord is stored when a job is created, so a restarted stage polls the
// same job instead of paying for a new one.
type batchRecord struct {
	Provider string    `json:"provider"`
	Model    string    `json:"model"`
	Name     string    `json:"name"`
	ID       string    `json:"id"`
	Items    int       `json:"items"`
	Created  time.Time `json:"created"`
}

// BatchReport says what a Batch call did.
type BatchReport struct {
	ID       string `json:"id,omitempty"` // the provider's job id; empty when no job was needed
	Resumed  bool   `json:"resumed"`      // an earlier run had created the job
	Cached   int    `json:"cached"`       // requests already in the cache
	Items    int    `json:"items"`        // requests sent in the job
	Answered int    `json:"answered"`     // replies stored in the cache
	Failed   int    `json:"failed"`       // left for the online pass
	State    string `json:"state,omitempty"`
}

// Batch sends the requests the cache lacks through the provider's batch API,
// waits for the job, and stores every reply in the cache. name identifies the
// work (stage and shard); the job is recorded under
// cache/teacher/batches/<hash>.json, so calling Batch again with the same
// requests — after a crash, or from another task — polls the recorded job
// instead of creating a new one; the job also carries that hash as a tag, so
// a restart after a crash between creating the job and recording it adopts
// the job too. Items the job failed stay uncached: run Map
// afterwards and they are retried online. Fewer than batch.min_items
// uncached requests create no job.
func (t *Teacher) Batch(ctx context.Context, name string, reqs []*Request) (BatchReport, error) {
	var rep BatchReport
	b, ok := t.provider.(batcher)
	if !ok {
		return rep, fmt.Errorf("teacher: batch mode is not available for provider %s (use vertex or openai)", t.cfg.Provider)
	}
	if t.cache == nil {
		return rep, fmt.Errorf("teacher: batch mode needs the response cache (teacher.cache: true)")
	}
	items, keys, err := t.uncached(ctx, reqs)
	if err != nil {
		return rep, err
	}
	rep.Cached = len(reqs) - len(items)
	rep.Items = len(items)
	if len(items) == 0 || len(items) < t.cfg.Batch.MinItems {
		rep.Items = 0
		return rep, nil
	}
	// The job is named by the whole request set, not by what is uncached
	// now: a restart after the job finished finds the same record (and the
	// items it failed go online) instead of batching the leftovers again.
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n", t.cfg.Provider, t.cfg.Model, name)
	for _, k := range keys {
		fmt.Fprintln(h, k)
	}
	id := hex.EncodeToString(h.Sum(nil))[:32]
	dir := CachePrefix + "/batches/" + id
	recKey := dir + ".json"

	if id, ok := t.collected.Load(recKey); ok {
		// This process already read that job's results; what is still
		// uncached failed in it and goes online.
		rep.ID, rep.Failed = id.(string), len(items)
		return rep, nil
	}
	var rec batchRecord
	raw, err := readAll(ctx, t.store, recKey)
	switch {
	case err == nil:
		if err := json.Unmarshal(raw, &rec); err != nil {
			return rep, fmt.Errorf("teacher: read batch record %s: %w", t.store.URI(recKey), err)
		}
		rep.Resumed = true
		t.log.Info("teacher batch: polling the recorded job", "name", name, "job", rec.ID)
	case errors.Is(err, storage.ErrNotExist):
		// A crash after the provider created the job and before the record
		// was stored leaves a job tagged with id and no record: adopt it
		// instead of paying for a second one.
		jobID, err := b.find(ctx, id, name)
		if err != nil {
			return rep, fmt.Errorf("teacher: look for batch %s: %w", name, err)
		}
		if jobID != "" {
			rep.Resumed = true
			t.log.Info("teacher batch: adopting the unrecorded job", "name", name, "job", jobID)
		} else {
			if err := t.budget.reserveBatch(items); err != nil {
				return rep, err
			}
			if jobID, err = b.submit(ctx, t.store, dir, id, name, items); err != nil {
				t.budget.settleBatch(items, Usage{})
				return rep, fmt.Errorf("teacher: submit batch %s: %w", name, err)
			}
			t.log.Info("teacher batch: submitted", "name", name, "job", jobID, "items", len(items))
		}
		rec = batchRecord{Provider: t.cfg.Provider, Model: t.cfg.Model, Name: name, ID: jobID,
			Items: len(items), Created: time.Now().UTC()}
		rb, _ := json.Marshal(rec)
		if err := putIfAbsent(ctx, t.store, recKey, rb); err != nil {
			return rep, fmt.Errorf("teacher: record batch %s (job %s): %w", name, jobID, err)
		}
	default:
		return rep, fmt.Errorf("teacher: read batch record %s: %w", t.store.URI(recKey), err)
	}
	rep.ID = rec.ID

	for {
		done, state, err := b.poll(ctx, rec.ID)
		rep.State = state
		if err != nil {
			return rep, fmt.Errorf("teacher: poll batch %s: %w", rec.ID, err)
		}
		if done {
			break
		}
		if err := sleep(ctx, t.cfg.Batch.PollInterval); err != nil {
			return rep, err
		}
	}

	byKey := make(map[string]*Request, len(items))
	for _, it := range items {
		byKey[it.key] = it.req
	}
	var usage Usage
	var mu sync.Mutex
	p := pool.New().WithErrors().WithContext(ctx).WithMaxGoroutines(16)
	err = b.results(ctx, t.store, dir, rec.ID, func(r batchResult) {
		req, ok := byKey[r.key]
		if !ok {
			return // not ours (a resumed job whose request set differs cannot happen: the id hashes it)
		}
		if r.err != nil || r.reply == nil {
			t.log.Warn("teacher batch: item failed; it will be retried online", "job", rec.ID, "key", r.key, "err", r.err)
			return
		}
		mu.Lock()
		rep.Answered++
		usage.Input += r.reply.Usage.Input
		usage.Output += r.reply.Usage.Output
		mu.Unlock()
		p.Go(func(ctx context.Context) error {
			return t.cache.put(ctx, r.key, req, r.reply, "batch:"+rec.ID)
		})
	})
	perr := p.Wait()
	rep.Failed = len(items) - rep.Answered
	t.stats.batchItems.Add(int64(rep.Answered))
	t.stats.batchFailed.Add(int64(rep.Failed))
	t.stats.inputTokens.Add(int64(usage.Input))
	t.stats.outputTokens.Add(int64(usage.Output))
	if !rep.Resumed {
		t.budget.settleBatch(items, usage)
	} else {
		t.budget.settleBatch(nil, usage)
	}
	if err != nil {
		return rep, fmt.Errorf("teacher: read results of batch %s: %w", rec.ID, err)
	}
	if perr != nil {
		return rep, fmt.Errorf("teacher: cache results of batch %s: %w", rec.ID, perr)
	}
	t.collected.Store(recKey, rec.ID)
	return rep, nil
}

// uncached returns the distinct requests whose reply is not in the cache, in
// input order, and the cache keys of all requests.
func (t *Teacher) uncached(ctx context.Context, reqs []*Request) ([]batchItem, []string, error) {
	missing := make([]bool, len(reqs))
	keys := make([]string, len(reqs))
	p := pool.New().WithErrors().WithContext(ctx).WithMaxGoroutines(32)
	for i, req := range reqs {
		if req.Params.MaxTokens <= 0 {
			return nil, nil, fmt.Errorf("teacher: batch request %d: params.max_tokens must be positive", i)
		}
		keys[i] = CacheKey(t.cfg.Provider, t.cfg.Model, req)
		p.Go(func(ctx context.Context) error {
			_, err := t.store.Stat(ctx, cacheObject(keys[i]))
			if errors.Is(err, storage.ErrNotExist) {
				missing[i] = true
				return nil
			}
			return err
		})
	}
	if err := p.Wait(); err != nil {
		return nil, nil, fmt.Errorf("teacher: check cache: %w", err)
	}
	var items []batchItem
	seen := map[string]bool{}
	for i, req := range reqs {
		if missing[i] && !seen[keys[i]] {
			seen[keys[i]] = true
			items = append(items, batchItem{key: keys[i], req: req})
		}
	}
	return items, keys, nil
}

func batchEstimate(items []batchItem) Usage {
	var u Usage
	for _, it := range items {
		u.Input += estimateInput(it.req)
		u.Output += it.req.Params.MaxTokens
	}
	return u
}

// reserveBatch holds a whole batch's worst case against the budget.
func (b *budget) reserveBatch(items []batchItem) error {
	u := batchEstimate(items)
	tok, usd := int64(u.Input+u.Output), b.cfg.Cost(u)
	b.mu.Lock()
	defer b.mu.Unlock()
	lim := b.cfg.Budget
	if (lim.Tokens > 0 && b.spentTok+b.reservedTok+tok > lim.Tokens) ||
		(lim.USD > 0 && b.spentUSD+b.reservedUSD+usd > lim.USD) {
		b.stats.budgetDenied.Add(1)
		return fmt.Errorf("%w: a batch of %d calls may take %d tokens ($%.4f); spent %d tokens ($%.4f) of %d ($%.4f)",
			ErrBudget, len(items), tok, usd, b.spentTok, b.spentUSD, lim.Tokens, lim.USD)
	}
	b.reservedTok += tok
	b.reservedUSD += usd
	return nil
}

// settleBatch releases a batch's reservation and books its real usage.
func (b *budget) settleBatch(items []batchItem, real Usage) {
	u := batchEstimate(items)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reservedTok -= int64(u.Input + u.Output)
	b.reservedUSD -= b.cfg.Cost(u)
	b.spentTok += int64(real.Input + real.Output)
	b.spentUSD += b.cfg.Cost(real)
}
