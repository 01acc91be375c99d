package job

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/statjob/statjob/storage"
)

// Lease is the object that says who works on a piece of a run (a stage,
// or one shard of a stage) and until when. It is written only with
// compare-and-swap, so of two runners at most one holds it.
type Lease struct {
	Holder    string    `json:"holder"`
	Acquired  time.Time `json:"acquired"`
	Heartbeat time.Time `json:"heartbeat"`
	Expires   time.Time `json:"expires"`
	// Released is set when the holder let go (finished, failed, stopped);
	// a released lease is free at once.
	Released bool `json:"released,omitempty"`
	// Task is the batch task that holds it (job id and task index). A
	// batch system runs one attempt of a task at a time, so a retried task
	// takes over its dead attempt's leases at once instead of waiting for
	// them to expire.
	Task string `json:"task,omitempty"`
}

// BatchTask names this process's batch task, or "" outside a batch array:
// BATCH_JOB_UID/BATCH_TASK_INDEX on Cloud Batch, AWS_BATCH_JOB_ID (which
// carries ":<index>" for array children) on AWS Batch, the job and replica
// on Vertex AI (vertexTask).
func BatchTask() string {
	if job, i := os.Getenv("BATCH_JOB_UID"), os.Getenv("BATCH_TASK_INDEX"); job != "" && i != "" {
		return job + "/" + i
	}
	if id := os.Getenv("AWS_BATCH_JOB_ID"); id != "" {
		return id
	}
	return vertexTask()
}

// HeldError says that someone else holds a lease.
type HeldError struct {
	Key   string
	Lease Lease
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("%s is held by %s until %s (last heartbeat %s)", e.Key, e.Lease.Holder,
		e.Lease.Expires.UTC().Format(time.RFC3339), e.Lease.Heartbeat.UTC().Format(time.RFC3339))
}

// ErrLeaseLost: a heartbeat found that another runner took the lease over
// (this one was presumed dead). The work under it is abandoned.
var ErrLeaseLost = errors.New("lease taken over by another runner")

// NewHolderID names this process in leases and manifests: host, pid, the
// batch task index when there is one, and a random suffix.
func NewHolderID() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "unknown-host"
	}
	id := fmt.Sprintf("%s/pid-%d", host, os.Getpid())
	for _, v := range []string{"BATCH_TASK_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX"} {
		if t := os.Getenv(v); t != "" {
			id += "/task-" + t
		}
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return id + "/" + hex.EncodeToString(b)
}

// leaser takes, renews and releases leases for one holder.
type leaser struct {
	store     storage.Store
	holder    string
	task      string // BatchTask(), "" outside batch
	ttl       time.Duration
	heartbeat time.Duration
	now       func() time.Time
}

// read returns the lease under key with the generation it was read at.
func (l *leaser) read(ctx context.Context, key string) (Lease, string, error) {
	a, err := l.store.Stat(ctx, key)
	if err != nil {
		return Lease{}, "", err
	}
	rc, err := l.store.Get(ctx, key)
	if err != nil {
		return Lease{}, "", err
	}
	defer rc.Close()
	var ls Lease
	if err := json.NewDecoder(rc).Decode(&ls); err != nil {
		return Lease{}, "", fmt.Errorf("read lease %s: %w", l.store.URI(key), err)
	}
	// If the object changed between Stat and Get, the generation is older
	// than the content and a compare-and-swap with it fails: safe.
	return ls, a.Generation, nil
}

func (l *leaser) put(ctx context.Context, key string, ls Lease, opts storage.PutOptions) (string, error) {
	b, err := json.Marshal(ls)
	if err != nil {
		return "", err
	}
	opts.ContentType = "application/json"
	a, err := l.store.Put(ctx, key, bytes.NewReader(b), opts)
	if err != nil {
		return "", err
	}
	return a.Generation, nil
}

// acquire takes the lease under key if it is absent, released, expired or
// already ours; otherwise it returns a *HeldError.
func (l *leaser) acquire(ctx context.Context, key string) (string, error) {
	for attempt := 0; attempt < 5; attempt++ {
		now := l.now()
		mine := Lease{Holder: l.holder, Task: l.task, Acquired: now, Heartbeat: now, Expires: now.Add(l.ttl)}
		cur, gen, err := l.read(ctx, key)
		if errors.Is(err, storage.ErrNotExist) {
			g, err := l.put(ctx, key, mine, storage.PutOptions{IfAbsent: true})
			if errors.Is(err, storage.ErrExists) {
				continue // someone was faster: look again
			}
			if err != nil {
				return "", fmt.Errorf("take lease %s: %w", l.store.URI(key), err)
			}
			return g, nil
		}
		if err != nil {
			return "", fmt.Errorf("read lease %s: %w", l.store.URI(key), err)
		}
		sameTask := l.task != "" && cur.Task == l.task
		if !cur.Released && cur.Holder != l.holder && !sameTask && now.Before(cur.Expires) {
			return "", &HeldError{Key: key, Lease: cur}
		}
		g, err := l.put(ctx, key, mine, storage.PutOptions{IfGeneration: gen})
		if errors.Is(err, storage.ErrStale) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("take lease %s: %w", l.store.URI(key), err)
		}
		return g, nil
	}
	cur, _, err := l.read(ctx, key)
	if err != nil {
		return "", fmt.Errorf("take lease %s: contended, then %w", l.store.URI(key), err)
	}
	return "", &HeldError{Key: key, Lease: cur}
}

// hold is a lease this runner holds, kept alive by a heartbeat.
type hold struct {
	l    *leaser
	key  string
	mu   sync.Mutex
	gen  string
	lost bool
	stop chan struct{}
	done chan struct{}
}

// take acquires key and starts its heartbeat. onLost is called (once, from
// the heartbeat goroutine) if another runner takes the lease over.
func (l *leaser) take(ctx context.Context, key string, onLost func()) (*hold, error) {
	gen, err := l.acquire(ctx, key)
	if err != nil {
		return nil, err
	}
	h := &hold{l: l, key: key, gen: gen, stop: make(chan struct{}), done: make(chan struct{})}
	go h.beat(context.WithoutCancel(ctx), onLost)
	return h, nil
}

func (h *hold) beat(ctx context.Context, onLost func()) {
	defer close(h.done)
	t := time.NewTicker(h.l.heartbeat)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		if err := h.renew(ctx); err != nil {
			if errors.Is(err, ErrLeaseLost) {
				onLost()
				return
			}
			// A failed renewal (network) is retried at the next beat; the
			// lease is lost only when someone else has taken it.
		}
	}
}

func (h *hold) renew(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lost {
		return ErrLeaseLost
	}
	cur, gen, err := h.l.read(ctx, h.key)
	if err != nil {
		return err
	}
	if !h.ours(cur, gen) {
		h.lost = true
		return ErrLeaseLost
	}
	now := h.l.now()
	cur.Heartbeat, cur.Expires = now, now.Add(h.l.ttl)
	g, err := h.l.put(ctx, h.key, cur, storage.PutOptions{IfGeneration: gen})
	if errors.Is(err, storage.ErrStale) {
		h.lost = true
		return ErrLeaseLost
	}
	if err != nil {
		return err
	}
	h.gen = g
	return nil
}

// ours reports whether the lease read at gen is still this holder's. The
// holder id is unique to this runner, so a lease naming it is ours even at
// a generation other than the one last seen: a renewal the store applied
// although its answer never arrived (a write whose outcome the store could
// not tell) moved it on. That generation is adopted.
func (h *hold) ours(cur Lease, gen string) bool {
	if cur.Holder != h.l.holder || cur.Released {
		return false
	}
	h.gen = gen
	return true
}

// release stops the heartbeat and marks the lease released, unless it was
// lost meanwhile.
func (h *hold) release(ctx context.Context) error {
	close(h.stop)
	<-h.done
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lost {
		return nil
	}
	cur, gen, err := h.l.read(ctx, h.key)
	if err != nil {
		return fmt.Errorf("release lease %s: %w", h.l.store.URI(h.key), err)
	}
	if !h.ours(cur, gen) {
		return nil // taken over: not ours to release
	}
	cur.Released = true
	cur.Heartbeat = h.l.now()
	_, err = h.l.put(ctx, h.key, cur, storage.PutOptions{IfGeneration: gen})
	if err != nil && !errors.Is(err, storage.ErrStale) {
		return fmt.Errorf("release lease %s: %w", h.l.store.URI(h.key), err)
	}
	return nil
}

// ReadLeases returns the leases of a run by piece ("gen", "gen.1").
func ReadLeases(ctx context.Context, store storage.Store, runID string) (map[string]Lease, error) {
	prefix := runKey(runID, "leases/")
	out := map[string]Lease{}
	err := store.List(ctx, prefix, func(a storage.Attrs) error {
		rc, err := store.Get(ctx, a.Key)
		if errors.Is(err, storage.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			return err
		}
		var ls Lease
		if err := json.Unmarshal(b, &ls); err != nil {
			return fmt.Errorf("read lease %s: %w", store.URI(a.Key), err)
		}
		out[a.Key[len(prefix):]] = ls
		return nil
	})
	return out, err
}

// BreakLease marks a lease released whoever holds it (statjob unlock).
// The holder, if alive, sees the change at its next heartbeat and stops.
func BreakLease(ctx context.Context, store storage.Store, runID, piece string) (Lease, error) {
	l := &leaser{store: store, now: time.Now}
	key := runKey(runID, "leases/"+piece)
	cur, gen, err := l.read(ctx, key)
	if err != nil {
		return Lease{}, fmt.Errorf("read lease %s: %w", store.URI(key), err)
	}
	broken := cur
	broken.Released = true
	broken.Holder = cur.Holder + " (broken by unlock)"
	if _, err := l.put(ctx, key, broken, storage.PutOptions{IfGeneration: gen}); err != nil {
		return cur, fmt.Errorf("break lease %s: %w", store.URI(key), err)
	}
	return cur, nil
}
