package job

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/statjob/statjob/storage"
)

// ErrInterrupted: the run stopped on SIGTERM / SIGINT (or a cancelled
// context). Storage is consistent; the next start resumes.
var ErrInterrupted = errors.New("run interrupted; start it again to resume")

// ErrSpecChanged: a run was joined with a spec other than the one frozen in
// its run.json.
var ErrSpecChanged = errors.New("exists with another spec")

// errCacheGone: a stage cache entry lost an output while it was being
// reused (pruned meanwhile); the stage is computed instead.
var errCacheGone = errors.New("stage cache entry went away")

// ErrNoCAS: the store cannot do conditional writes, which manifests and
// leases need.
var ErrNoCAS = errors.New("this store cannot do conditional writes (create-if-absent, compare-and-swap), which statjob needs for manifests and leases")

// ExitInterrupted is the exit status of a run stopped by a signal (EX_TEMPFAIL:
// try again). Batch retry policies can match on it.
const ExitInterrupted = 75

// RunRecord is run.json: the frozen spec of a run, written once.
type RunRecord struct {
	ID           string            `json:"id"`
	Version      string            `json:"version"`
	Created      time.Time         `json:"created"`
	From         string            `json:"from,omitempty"`
	Until        string            `json:"until,omitempty"`
	Stages       []string          `json:"stages"`
	Fingerprints map[string]string `json:"fingerprints"`
	Spec         json.RawMessage   `json:"spec"`
}

// ReadRun returns a run's run.json.
func ReadRun(ctx context.Context, store storage.Store, runID string) (*RunRecord, error) {
	var rec RunRecord
	if err := readJSON(ctx, store, runKey(runID, "run.json"), &rec); err != nil {
		if errors.Is(err, storage.ErrNotExist) {
			return nil, fmt.Errorf("no run %q under %s: %w", runID, store.URI("runs/"), err)
		}
		return nil, err
	}
	return &rec, nil
}

// ListRuns returns the runs under the store's root, newest first. A run.json
// that cannot be read or parsed does not hide the others: it is left out of
// runs and reported in skipped, one error per run naming its key. err is
// for a listing that failed.
func ListRuns(ctx context.Context, store storage.Store) (runs []*RunRecord, skipped []error, err error) {
	err = store.List(ctx, "runs/", func(a storage.Attrs) error {
		rest := strings.TrimPrefix(a.Key, "runs/")
		id, name, ok := strings.Cut(rest, "/")
		if !ok || name != "run.json" {
			return nil
		}
		rec, err := ReadRun(ctx, store, id)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			skipped = append(skipped, fmt.Errorf("run %s: %w", id, err))
			return nil
		}
		runs = append(runs, rec)
		return nil
	})
	sort.SliceStable(runs, func(i, j int) bool { return runs[i].Created.After(runs[j].Created) })
	return runs, skipped, err
}

// NewRunID returns a run id that sorts by start time: 20260102-150405-a1b2.
func NewRunID(now time.Time) string {
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	return now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b)
}

// Options say which run to work on and how.
type Options struct {
	// RunID of the run to start or join; empty: a new run.
	RunID string
	// Resume: the run must exist already (its spec is the frozen one).
	Resume bool
	// From forces this stage and its downstream to recompute rather than
	// be taken from the stage cache.
	From string
	// Until stops after this stage (and what it needs).
	Until string
	// Shard and Shards: this task's piece of every sharded stage.
	// Zero Shards means 1.
	Shard, Shards int
	// Holder names this runner in leases; empty: NewHolderID().
	Holder string
	// Task names the batch task this runner is an attempt of (BatchTask());
	// it takes over leases of earlier attempts of the same task at once.
	Task string
	// Version of the binary, recorded in run.json.
	Version string
	// Reporter shows progress; nil: JSON logs to stderr.
	Reporter *Reporter
	// Now is the clock for leases; nil: time.Now.
	Now func() time.Time
}

// Summary is what a run did.
type Summary struct {
	RunID   string
	URI     string   // the run's folder
	Ran     []string // computed here
	Reused  []string // taken from cache/stages
	Done    []string // already finished (by an earlier start, or by other runners)
	Shards  []string // shard pieces computed here ("gen 0/2")
	Elapsed time.Duration
}

type runner struct {
	store   storage.Store
	spec    *Spec
	graph   *Graph
	opts    Options
	cfg     *Config
	rep     *Reporter
	now     func() time.Time
	leases  *leaser
	runID   string
	fps     map[string]string
	forced  map[string]bool
	done    map[string]*Manifest
	sum     *Summary
	waitMsg string
	start   time.Time
}

// Run starts, joins or resumes a run of g and works on it until every
// selected stage is done. ctx cancelled (SIGTERM) stops new work at once;
// work in flight gets the job section's grace to finish, then is abandoned;
// Run then returns ErrInterrupted.
func Run(ctx context.Context, store storage.Store, spec *Spec, g *Graph, opts Options) (*Summary, error) {
	start := time.Now()
	if !store.Conditional() {
		return nil, fmt.Errorf("%s: %w; use a local folder, gs:// or an S3 store with conditional writes", store.URI(""), ErrNoCAS)
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if opts.Shards == 0 {
		opts.Shards = 1
	}
	if opts.Shard < 0 || opts.Shard >= opts.Shards {
		return nil, fmt.Errorf("shard %d of %d: want 0 <= index < count", opts.Shard, opts.Shards)
	}
	if opts.Holder == "" {
		opts.Holder = NewHolderID()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	rep := opts.Reporter
	if rep == nil {
		rep = NewReporter(os.Stderr, false)
	}
	rep.every = spec.Job().ProgressEvery

	var rec *RunRecord
	if opts.Resume {
		var err error
		if rec, err = ReadRun(ctx, store, opts.RunID); err != nil {
			return nil, err
		}
		opts.From, opts.Until = rec.From, rec.Until
	}
	selected, forced, err := g.Select(opts.From, opts.Until)
	if err != nil {
		return nil, err
	}
	if missing := Missing(selected); len(missing) > 0 {
		return nil, fmt.Errorf("%w: %s; nothing was run (see `statjob stages`)", errNotInstalled, strings.Join(missing, ", "))
	}
	fps, err := g.Fingerprints(spec)
	if err != nil {
		return nil, err
	}
	frozen, err := spec.Canonical()
	if err != nil {
		return nil, err
	}
	if opts.RunID == "" {
		if opts.Shards > 1 {
			return nil, errors.New("a sharded run needs --run-id (or BATCH_JOB_UID / AWS_BATCH_JOB_ID) so that its tasks share one run")
		}
		opts.RunID = NewRunID(opts.Now())
	}
	if err := checkRunID(opts.RunID); err != nil {
		return nil, err
	}
	r := &runner{
		store: store, spec: spec, graph: g, opts: opts, cfg: spec.Job(), rep: rep, now: opts.Now,
		start: start, runID: opts.RunID, fps: fps, forced: forced, done: map[string]*Manifest{},
		sum: &Summary{RunID: opts.RunID, URI: store.URI(runKey(opts.RunID, ""))},
	}
	r.leases = &leaser{store: store, holder: opts.Holder, task: opts.Task, ttl: r.cfg.LeaseTTL, heartbeat: r.cfg.Heartbeat, now: opts.Now}
	if !opts.Resume {
		if err := r.freeze(ctx, frozen, selected); err != nil {
			return nil, err
		}
	}
	rep.Printf("run %s (%s), %d stages, shard %d of %d, runner %s", r.runID, r.sum.URI, len(selected), opts.Shard, opts.Shards, opts.Holder)
	err = r.loop(ctx, selected)
	r.sum.Elapsed = time.Since(start)
	return r.sum, err
}

func checkRunID(id string) error {
	if id == "" || strings.ContainsAny(id, "/\\ ") || id == "." || id == ".." {
		return fmt.Errorf("run id %q: want letters, digits, '-', '_' or '.'", id)
	}
	return nil
}

// freeze writes run.json, or checks that the existing one has this spec.
func (r *runner) freeze(ctx context.Context, frozen json.RawMessage, selected []Stage) error {
	rec := RunRecord{
		ID: r.runID, Version: r.opts.Version, Created: r.now().UTC(), From: r.opts.From, Until: r.opts.Until,
		Fingerprints: r.fps, Spec: frozen,
	}
	for _, st := range selected {
		rec.Stages = append(rec.Stages, st.Name())
	}
	err := createJSON(ctx, r.store, runKey(r.runID, "run.json"), rec)
	if !errors.Is(err, storage.ErrExists) {
		return err
	}
	old, err := ReadRun(ctx, r.store, r.runID)
	if err != nil {
		return err
	}
	var a, b any
	_ = json.Unmarshal(old.Spec, &a)
	_ = json.Unmarshal(frozen, &b)
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if !bytes.Equal(ja, jb) || old.From != r.opts.From || old.Until != r.opts.Until {
		return fmt.Errorf("run %s %w or --from/--until: resume it with `statjob resume %s`, or leave out --run-id to start a new run", r.runID, ErrSpecChanged, r.runID)
	}
	return nil
}

// loop works on the selected stages until all are done.
func (r *runner) loop(ctx context.Context, selected []Stage) error {
	for {
		allDone, progressed := true, false
		var waits []string
		for _, st := range selected {
			if r.done[st.Name()] != nil {
				continue
			}
			allDone = false
			if ctx.Err() != nil {
				return ErrInterrupted
			}
			ready := true
			for _, need := range st.Needs() {
				if r.done[need] == nil {
					ready = false
				}
			}
			if !ready {
				continue
			}
			did, wait, err := r.step(ctx, st)
			if err != nil {
				return err
			}
			if wait != "" {
				waits = append(waits, wait)
			}
			if did {
				progressed = true
				break // rescan: downstream may be ready now
			}
		}
		if allDone {
			r.rep.Printf("run %s done in %s: %d ran, %d reused from cache, %d already done; outputs in %s",
				r.runID, time.Since(r.start).Round(10*time.Millisecond), len(r.sum.Ran), len(r.sum.Reused), len(r.sum.Done), r.sum.URI)
			return nil
		}
		if progressed {
			continue
		}
		if msg := strings.Join(waits, "; "); msg != r.waitMsg {
			r.waitMsg = msg
			if msg == "" {
				msg = "nothing ready"
			}
			r.rep.Printf("waiting: %s", msg)
		}
		select {
		case <-ctx.Done():
			return ErrInterrupted
		case <-time.After(r.cfg.Poll):
		}
	}
}

// step tries to move stage st forward: notice it is done, take it from the
// cache, run it, run this task's shard of it, or merge its shards. It
// returns did=true when st made progress, or a line saying what it waits for.
func (r *runner) step(ctx context.Context, st Stage) (did bool, wait string, err error) {
	name, fp := st.Name(), r.fps[st.Name()]
	if m, err := r.manifest(ctx, stageKey(r.runID, name, manifestName)); err != nil {
		return false, "", err
	} else if m != nil {
		if m.Fingerprint != fp {
			return false, "", fmt.Errorf("stage %s of run %s was finished with fingerprint %s, but this build computes %s from the run's spec: start a new run", name, r.runID, m.Fingerprint, fp)
		}
		r.done[name] = m
		r.sum.Done = append(r.sum.Done, name)
		r.rep.stage("done", name, 0, fp, "finished earlier by "+m.Holder)
		if m.ReusedFrom == "" {
			// Its runner may have stopped between the manifest and the cache.
			return true, "", r.toCache(ctx, m)
		}
		return true, "", nil
	}
	if !r.forced[name] {
		cached, err := r.manifest(ctx, cacheKey(fp, manifestName))
		if err != nil {
			return false, "", err
		}
		if cached != nil && r.cacheComplete(ctx, cached) {
			did, wait, err := r.withLease(ctx, leaseKey(r.runID, name, 0, 1), func(ctx context.Context) error {
				return r.reuse(ctx, st, cached)
			})
			if !errors.Is(err, errCacheGone) {
				return did, wait, err
			}
			r.rep.Printf("%v: %s recomputes", err, name)
		}
	}
	_, sharded := st.(Sharded)
	if !sharded {
		return r.withLease(ctx, leaseKey(r.runID, name, 0, 1), func(ctx context.Context) error {
			return r.run(ctx, st, 0, 1, false)
		})
	}
	n, err := r.shardCount(ctx, name)
	if err != nil {
		return false, "", err
	}
	// This task's own shard first; then any shard whose holder stopped:
	// its lease expired (no heartbeat) or was released without a manifest
	// (the holder failed or was stopped by a signal). Never one nobody has
	// started, which belongs to a task that may still be starting up —
	// unless this task works on a split it did not start (shardCount), whose
	// unstarted pieces may have no task left to start them.
	adopted := n != r.opts.Shards
	var missing, waits []string
	for k := 0; k < n; k++ {
		i := (r.opts.Shard + k) % n
		m, err := r.manifest(ctx, shardDir(r.runID, name, i, n)+manifestName)
		if err != nil {
			return false, "", err
		}
		if m != nil {
			continue
		}
		missing = append(missing, strconv.Itoa(i))
		if k > 0 && !adopted {
			ls, _, err := r.leases.read(ctx, leaseKey(r.runID, name, i, n))
			if err != nil || (!ls.Released && r.now().Before(ls.Expires)) {
				continue
			}
		}
		did, wait, err := r.withLease(ctx, leaseKey(r.runID, name, i, n), func(ctx context.Context) error {
			return r.run(ctx, st, i, n, false)
		})
		if did || err != nil {
			return did, wait, err
		}
		if wait != "" {
			waits = append(waits, wait)
		}
	}
	if len(missing) > 0 {
		if len(waits) > 0 {
			return false, strings.Join(waits, "; "), nil
		}
		return false, fmt.Sprintf("%s: shards %s of %d not finished", name, strings.Join(missing, ","), n), nil
	}
	return r.withLease(ctx, leaseKey(r.runID, name, 0, 1), func(ctx context.Context) error {
		return r.run(ctx, st, 0, n, true)
	})
}

// shardCount is the split a sharded stage is computed in: this task's
// shard count, unless the run already holds pieces of other splits only (an
// earlier attempt, or a task started with another count); then the one of
// those with the most finished pieces, so that a resumed run finishes the
// split it started rather than computing a second one beside it.
func (r *runner) shardCount(ctx context.Context, name string) (int, error) {
	splits, err := shardSplits(ctx, r.store, r.runID, name)
	if err != nil {
		return 0, err
	}
	if _, ok := splits[r.opts.Shards]; ok || len(splits) == 0 {
		return r.opts.Shards, nil
	}
	best := bestSplit(splits)
	r.rep.Printf("%s: run %s already splits it %d ways (%d finished); this task (shard count %d) works on that split",
		name, r.runID, best, splits[best], r.opts.Shards)
	return best, nil
}

// withLease runs fn holding the lease under key. Held by someone else:
// did=false and a line naming the holder.
func (r *runner) withLease(ctx context.Context, key string, fn func(context.Context) error) (bool, string, error) {
	if ctx.Err() != nil {
		return false, "", ErrInterrupted
	}
	work, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	h, err := r.leases.take(ctx, key, func() { cancel(ErrLeaseLost) })
	piece := strings.TrimPrefix(key, runKey(r.runID, "leases/"))
	var held *HeldError
	if errors.As(err, &held) {
		return false, fmt.Sprintf("%s held by %s until %s", piece, held.Lease.Holder, held.Lease.Expires.UTC().Format(time.TimeOnly)), nil
	}
	if err != nil {
		return false, "", err
	}
	// On SIGTERM, in-flight work gets the grace period, then is abandoned.
	finished := make(chan struct{})
	go func() {
		select {
		case <-finished:
		case <-ctx.Done():
			r.rep.Printf("stop requested: %s may finish within %s (job.grace), then it is abandoned", piece, r.cfg.Grace)
			t := time.NewTimer(r.cfg.Grace)
			defer t.Stop()
			select {
			case <-finished:
			case <-t.C:
				cancel(ErrInterrupted)
			}
		}
	}()
	err = fn(work)
	close(finished)
	if errors.Is(context.Cause(work), ErrLeaseLost) && ctx.Err() == nil {
		// Another runner took the piece over (this one was presumed dead,
		// or someone ran unlock): it is theirs now; carry on with the rest.
		r.rep.Printf("lost the lease of %s to another runner; leaving it to them", piece)
		return false, piece + " taken over by another runner", nil
	}
	if cause := context.Cause(work); cause != nil && err != nil && !errors.Is(err, cause) {
		err = fmt.Errorf("%w: %v", cause, err) // interrupted, or the lease was lost
	}
	if rerr := h.release(context.WithoutCancel(ctx)); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return false, "", err
	}
	return true, "", nil
}

// manifest reads a manifest; nil when absent.
func (r *runner) manifest(ctx context.Context, key string) (*Manifest, error) {
	var m Manifest
	err := readJSON(ctx, r.store, key, &m)
	if errors.Is(err, storage.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &m, nil
}

func (r *runner) inputs(st Stage) ([]Input, map[string]*Manifest) {
	var in []Input
	up := map[string]*Manifest{}
	for _, need := range st.Needs() {
		in = append(in, Input{Stage: need, Fingerprint: r.fps[need]})
		up[need] = r.done[need]
	}
	return in, up
}

// run computes stage st (shard i of n, or its merge) under a held lease and
// writes its manifest last.
func (r *runner) run(ctx context.Context, st Stage, i, n int, merge bool) error {
	_, sharded := st.(Sharded)
	isShard := sharded && !merge
	name, fp := st.Name(), r.fps[st.Name()]
	// Someone may have finished it between our look and our lease.
	key := stageKey(r.runID, name, manifestName)
	dir := runKey(r.runID, name+"/")
	label := name
	if isShard {
		key = shardDir(r.runID, name, i, n) + manifestName
		dir = shardDir(r.runID, name, i, n)
		label = fmt.Sprintf("%s %d/%d", name, i, n)
	}
	if m, err := r.manifest(ctx, key); err != nil || m != nil {
		return err
	}
	in, up := r.inputs(st)
	env := &Env{
		spec: r.spec, store: r.store, runID: r.runID, name: name, dir: dir, shard: i, shards: n, upstream: up,
		log: r.rep.log.With("stage", name), rep: r.rep, outputs: map[string]Output{},
	}
	if isShard {
		env.log = env.log.With("shard", i, "shards", n)
	}
	if merge {
		env.shard, env.shards = 0, 1
		for k := 0; k < n; k++ {
			m, err := r.manifest(ctx, shardDir(r.runID, name, k, n)+manifestName)
			if err != nil {
				return err
			}
			env.shardMs = append(env.shardMs, m)
		}
	}
	r.rep.stage("start", label, 0, fp, "")
	started := r.now()
	var metrics Metrics
	var err error
	if merge {
		metrics, err = st.(Sharded).Merge(ctx, env)
	} else {
		metrics, err = st.Run(ctx, env)
	}
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil {
		r.rep.stage("failed", label, r.now().Sub(started), fp, err.Error())
		return fmt.Errorf("stage %s: %w", label, err)
	}
	m := &Manifest{
		Stage: name, RunID: r.runID, Fingerprint: fp, Inputs: in, Outputs: env.recorded(), Metrics: metrics,
		Holder: r.opts.Holder, Started: started.UTC(), Finished: r.now().UTC(),
	}
	if isShard {
		m.Shard, m.Shards = i, n
	}
	for _, sm := range env.shardMs { // a merged stage started with its first shard
		if sm.Started.Before(m.Started) {
			m.Started = sm.Started
		}
	}
	if err := createJSON(ctx, r.store, key, m); err != nil {
		if errors.Is(err, storage.ErrExists) {
			return fmt.Errorf("stage %s: another runner finished it while this one held the lease: %w", label, err)
		}
		return err
	}
	r.rep.stage("ran", label, m.Finished.Sub(m.Started), fp, "")
	if isShard {
		r.sum.Shards = append(r.sum.Shards, label)
		return nil
	}
	r.sum.Ran = append(r.sum.Ran, name)
	r.done[name] = m
	return r.toCache(ctx, m)
}

// toCache copies a finished stage into cache/stages/<fingerprint>/, its
// manifest last, unless another run put it there first.
func (r *runner) toCache(ctx context.Context, m *Manifest) error {
	ck := cacheKey(m.Fingerprint, manifestName)
	if _, err := r.store.Stat(ctx, ck); err == nil {
		return nil
	} else if !errors.Is(err, storage.ErrNotExist) {
		return fmt.Errorf("stage cache: %w", err)
	}
	for _, o := range m.Outputs {
		if _, err := r.store.Copy(ctx, cacheKey(m.Fingerprint, o.Path), stageKey(r.runID, m.Stage, o.Path)); err != nil {
			return fmt.Errorf("stage cache: copy %s of %s: %w", o.Path, m.Stage, err)
		}
	}
	if err := createJSON(ctx, r.store, ck, m); err != nil && !errors.Is(err, storage.ErrExists) {
		return fmt.Errorf("stage cache: %w", err)
	}
	return nil
}

// cacheComplete reports whether every output of a cached stage is still
// there (a pruned cache entry is recomputed, not half-reused).
func (r *runner) cacheComplete(ctx context.Context, m *Manifest) bool {
	for _, o := range m.Outputs {
		if _, err := r.store.Stat(ctx, cacheKey(m.Fingerprint, o.Path)); err != nil {
			r.rep.Printf("stage cache entry %s lacks %s (%v): %s recomputes", m.Fingerprint, o.Path, err, m.Stage)
			return false
		}
	}
	return true
}

// reuse takes stage st's outputs from the stage cache into this run.
func (r *runner) reuse(ctx context.Context, st Stage, cached *Manifest) error {
	name := st.Name()
	key := stageKey(r.runID, name, manifestName)
	if m, err := r.manifest(ctx, key); err != nil || m != nil {
		if m != nil {
			r.done[name] = m
		}
		return err
	}
	started := r.now()
	for _, o := range cached.Outputs {
		a, err := r.store.Copy(ctx, stageKey(r.runID, name, o.Path), cacheKey(cached.Fingerprint, o.Path))
		if errors.Is(err, storage.ErrNotExist) { // pruned meanwhile
			return fmt.Errorf("stage %s: %w: %s is gone", name, errCacheGone, cacheKey(cached.Fingerprint, o.Path))
		}
		if err != nil {
			return fmt.Errorf("stage %s: take %s from the stage cache: %w", name, o.Path, err)
		}
		if a.SHA256 != "" && o.SHA256 != "" && a.SHA256 != o.SHA256 {
			return fmt.Errorf("stage %s: cached %s has sha256 %s, its manifest says %s", name, o.Path, a.SHA256, o.SHA256)
		}
	}
	m := *cached
	m.Stage, m.RunID, m.Holder = name, r.runID, r.opts.Holder
	m.Inputs, _ = r.inputs(st)
	m.ReusedFrom = cached.RunID
	m.Started, m.Finished = started.UTC(), r.now().UTC()
	if err := createJSON(ctx, r.store, key, &m); err != nil {
		return err
	}
	r.done[name] = &m
	r.sum.Reused = append(r.sum.Reused, name)
	r.rep.stage("reused", name, 0, m.Fingerprint, "from run "+cached.RunID)
	return nil
}
