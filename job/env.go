package job

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/statjob/statjob/storage"
)

// Output is one file a stage wrote, as its manifest records it.
type Output struct {
	Path   string `json:"path"` // relative to the stage's folder
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// Input is one upstream stage a stage read.
type Input struct {
	Stage       string `json:"stage"`
	Fingerprint string `json:"fingerprint"`
}

// Manifest is a finished stage (or shard): written last, create-if-absent.
type Manifest struct {
	Stage       string    `json:"stage"`
	RunID       string    `json:"run_id"`
	Fingerprint string    `json:"fingerprint"`
	Shard       int       `json:"shard,omitempty"`  // shard manifests only
	Shards      int       `json:"shards,omitempty"` // shard manifests only
	Inputs      []Input   `json:"inputs"`
	Outputs     []Output  `json:"outputs"`
	Metrics     Metrics   `json:"metrics,omitempty"`
	Holder      string    `json:"holder"`
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished"`
	// ReusedFrom is the run whose outputs were taken from cache/stages.
	ReusedFrom string `json:"reused_from,omitempty"`
}

// Output returns the recorded output with the given path, or false.
func (m *Manifest) Output(name string) (Output, bool) {
	for _, o := range m.Outputs {
		if o.Path == name {
			return o, true
		}
	}
	return Output{}, false
}

const manifestName = "MANIFEST.json"

// Env is what a running stage sees: where to write, what it may read,
// which shard it is, how to report progress.
type Env struct {
	spec     *Spec
	store    storage.Store
	runID    string
	name     string
	dir      string // key prefix of this stage's (or shard's) outputs, with "/"
	shard    int
	shards   int
	upstream map[string]*Manifest
	shardMs  []*Manifest // for Merge: every shard's manifest
	log      *slog.Logger
	rep      *Reporter

	mu      sync.Mutex
	outputs map[string]Output
}

// Name is the stage instance's name.
func (e *Env) Name() string { return e.name }

// Spec is the run's spec (the frozen one when the run resumes): a stage
// reads its settings from it with Section.
func (e *Env) Spec() *Spec { return e.spec }

// RunID is the run's id.
func (e *Env) RunID() string { return e.runID }

// Shard returns this piece's shard index and the shard count (0, 1 for a
// stage that is not sharded, and for Merge).
func (e *Env) Shard() (index, count int) { return e.shard, e.shards }

// Log is the stage's logger (JSON with severity in batch, text on a
// terminal), with the stage name attached.
func (e *Env) Log() *slog.Logger { return e.log }

// Store is the run's store, for what lives outside stage folders (the
// teacher's reply cache under cache/teacher/). Stage outputs go through Put.
func (e *Env) Store() storage.Store { return e.store }

// Key returns the store key of name in this stage's folder, for checkpoints a
// stage keeps across restarts and reads back with Open(ctx, env.Name(), name).
func (e *Env) Key(name string) string { return e.dir + name }

func checkOutputName(name string) error {
	if name == "" || path.Clean(name) != name || strings.HasPrefix(name, "/") || strings.HasPrefix(name, "../") ||
		name == ".." || name == manifestName || strings.HasPrefix(name, "_shards/") {
		return fmt.Errorf("output name %q: want a relative path such as data/train.jsonl (not %s, not under _shards/)", name, manifestName)
	}
	return nil
}

// Put writes an output whole from r and records its size and sha256 for
// the manifest. Writing the same name again replaces it.
func (e *Env) Put(ctx context.Context, name string, r io.Reader) (Output, error) {
	if err := checkOutputName(name); err != nil {
		return Output{}, fmt.Errorf("stage %s: %w", e.name, err)
	}
	a, err := e.store.Put(ctx, e.dir+name, r, storage.PutOptions{})
	if err != nil {
		return Output{}, fmt.Errorf("stage %s: write %s: %w", e.name, name, err)
	}
	o := Output{Path: name, Bytes: a.Size, SHA256: a.SHA256}
	e.mu.Lock()
	e.outputs[name] = o
	e.mu.Unlock()
	return o, nil
}

// WriteFile writes data as the output name.
func (e *Env) WriteFile(ctx context.Context, name string, data []byte) error {
	_, err := e.Put(ctx, name, bytes.NewReader(data))
	return err
}

// Create returns a writer for the output name that streams into storage;
// the output exists (and is recorded) once Close returns nil. Cancel ctx
// to abandon it.
func (e *Env) Create(ctx context.Context, name string) io.WriteCloser {
	pr, pw := io.Pipe()
	w := &outWriter{pw: pw, done: make(chan error, 1)}
	go func() {
		_, err := e.Put(ctx, name, pr)
		pr.CloseWithError(err) // unblocks a writer if Put stopped early
		w.done <- err
	}()
	return w
}

type outWriter struct {
	pw   *io.PipeWriter
	done chan error
}

func (w *outWriter) Write(p []byte) (int, error) { return w.pw.Write(p) }
func (w *outWriter) Close() error {
	w.pw.Close()
	return <-w.done
}

// Upstream returns the manifest of a stage this one needs: its outputs
// and metrics.
func (e *Env) Upstream(stage string) (*Manifest, error) {
	m, ok := e.upstream[stage]
	if !ok {
		return nil, fmt.Errorf("stage %s reads %q, which is not among its needs", e.name, stage)
	}
	return m, nil
}

// Open reads the output name of an upstream stage (one of Needs), checked
// against that stage's manifest. With stage = env.Name() it reads back what
// this stage wrote in an earlier, unfinished attempt (checkpoints):
// storage.ErrNotExist when there is none.
func (e *Env) Open(ctx context.Context, stage, name string) (io.ReadCloser, error) {
	if stage == e.name {
		return e.store.Get(ctx, e.dir+name)
	}
	m, err := e.Upstream(stage)
	if err != nil {
		return nil, err
	}
	if _, ok := m.Output(name); !ok {
		return nil, fmt.Errorf("stage %s has no output %q (it wrote: %s)", stage, name, outputNames(m))
	}
	rc, err := e.store.Get(ctx, stageKey(e.runID, stage, name))
	if err != nil {
		return nil, fmt.Errorf("read %s of stage %s: %w", name, stage, err)
	}
	return rc, nil
}

// ReadFile reads an upstream output whole.
func (e *Env) ReadFile(ctx context.Context, stage, name string) ([]byte, error) {
	rc, err := e.Open(ctx, stage, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// Shards returns, in Merge, the manifest of every shard in index order.
func (e *Env) Shards() []*Manifest { return e.shardMs }

// OpenShard reads, in Merge, the output name of shard i.
func (e *Env) OpenShard(ctx context.Context, i int, name string) (io.ReadCloser, error) {
	if i < 0 || i >= len(e.shardMs) {
		return nil, fmt.Errorf("stage %s: shard %d of %d", e.name, i, len(e.shardMs))
	}
	m := e.shardMs[i]
	if _, ok := m.Output(name); !ok {
		return nil, fmt.Errorf("stage %s shard %d has no output %q (it wrote: %s)", e.name, i, name, outputNames(m))
	}
	return e.store.Get(ctx, shardDir(e.runID, e.name, i, m.Shards)+name)
}

// Progress starts a progress report for total items of work (unit names
// them: "questions", "steps"). Add as work completes.
func (e *Env) Progress(unit string, total int64) *Progress {
	return e.rep.progress(e.name, unit, total)
}

func (e *Env) recorded() []Output {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Output, 0, len(e.outputs))
	for _, o := range e.outputs {
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func outputNames(m *Manifest) string {
	var ns []string
	for _, o := range m.Outputs {
		ns = append(ns, o.Path)
	}
	if len(ns) == 0 {
		return "nothing"
	}
	return strings.Join(ns, ", ")
}

// OutputKey is the store key of a stage's output in a run.
func OutputKey(runID, stage, name string) string { return stageKey(runID, stage, name) }

// Keys of the run layout.

func runKey(runID, rest string) string { return "runs/" + runID + "/" + rest }

func stageKey(runID, stage, name string) string { return runKey(runID, stage+"/"+name) }

func shardDir(runID, stage string, i, n int) string {
	return runKey(runID, fmt.Sprintf("%s/_shards/%d-of-%d/", stage, i, n))
}

// shardSplits maps each shard count that a sharded stage of a run has pieces
// under (_shards/<i>-of-<n>/) to how many of those pieces are finished.
func shardSplits(ctx context.Context, store storage.Store, runID, stage string) (map[int]int, error) {
	prefix := runKey(runID, stage+"/_shards/")
	splits := map[int]int{}
	err := store.List(ctx, prefix, func(a storage.Attrs) error {
		dir, file, _ := strings.Cut(strings.TrimPrefix(a.Key, prefix), "/")
		_, of, ok := strings.Cut(dir, "-of-")
		n, err := strconv.Atoi(of)
		if !ok || err != nil || n < 1 {
			return nil
		}
		if file == manifestName {
			splits[n]++
		} else if _, seen := splits[n]; !seen {
			splits[n] = 0
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list shards of %s: %w", stage, err)
	}
	return splits, nil
}

// bestSplit is the split with the most finished pieces (the smaller count on
// a tie); splits must not be empty.
func bestSplit(splits map[int]int) int {
	best := 0
	for n, done := range splits {
		if best == 0 || done > splits[best] || done == splits[best] && n < best {
			best = n
		}
	}
	return best
}

func cacheKey(fp, name string) string { return "cache/stages/" + fp + "/" + name }

func leaseKey(runID, stage string, shard, shards int) string {
	if shards > 1 {
		return runKey(runID, fmt.Sprintf("leases/%s.%d-of-%d", stage, shard, shards))
	}
	return runKey(runID, "leases/"+stage)
}

// readJSON reads a JSON object; storage.ErrNotExist passes through.
func readJSON(ctx context.Context, store storage.Store, key string, v any) error {
	rc, err := store.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("read %s: %w", store.URI(key), err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("read %s: %w", store.URI(key), err)
	}
	return nil
}

// createJSON writes v under key if nothing is there (storage.ErrExists
// otherwise).
func createJSON(ctx context.Context, store storage.Store, key string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = store.Put(ctx, key, bytes.NewReader(append(b, '\n')),
		storage.PutOptions{IfAbsent: true, ContentType: "application/json"})
	if err != nil && !errors.Is(err, storage.ErrExists) {
		return fmt.Errorf("write %s: %w", store.URI(key), err)
	}
	return err
}

// ReadManifest returns a stage's manifest in a run; storage.ErrNotExist
// when the stage is not done.
func ReadManifest(ctx context.Context, store storage.Store, runID, stage string) (*Manifest, error) {
	var m Manifest
	if err := readJSON(ctx, store, stageKey(runID, stage, manifestName), &m); err != nil {
		return nil, err
	}
	return &m, nil
}
