package stages

// The embed-sel baseline: for every difficult validation question, the k
// training questions nearest to it by the cosine similarity of their
// embeddings, each with the teacher's answers as STAT-Sel gives them.

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sort"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/sourcegraph/conc/pool"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/teacher"
	"github.com/statjob/statjob/train/backend"
	"github.com/statjob/statjob/train/model"
	"github.com/statjob/statjob/train/tokenizer"
)

// EmbedLocal is the provider of DatasetEmbedConfig that runs a Hugging
// Face decoder here instead of calling an API.
const EmbedLocal = "local"

// DatasetEmbedConfig is the embed-sel baseline (dataset.embed): which
// embedder, and how many neighbours per difficult question. The answers
// follow dataset.sel (answers, filter_correct).
type DatasetEmbedConfig struct {
	// K training questions nearest to each difficult question are kept
	// (default 5, as STAT-Sel draws 5 per pair).
	K int `yaml:"k"`
	// Provider local (the default) embeds with Model, a Hugging Face
	// decoder directory (path, gs:// or s3://; "" is student.model), on
	// student.backend: its final hidden states pooled over the text's
	// tokens. openai, gemini and vertex call that provider's embeddings
	// API with Model, BaseURL, APIKeyEnv, Project, Location, Dimensions,
	// Concurrency, Timeout and Retry as the teacher section spells them.
	// BatchSize applies to both.
	teacher.EmbedConfig `yaml:",inline"`
	// Pooling of the local model's hidden states: mean (over the tokens)
	// or last (the last token's).
	Pooling string `yaml:"pooling"`
	// MaxTokens: the local model reads at most this many tokens of a text.
	MaxTokens int `yaml:"max_tokens"`
}

// DefaultDatasetEmbedConfig embeds with the student itself, 5 neighbours.
func DefaultDatasetEmbedConfig() DatasetEmbedConfig {
	e := teacher.DefaultEmbedConfig()
	e.Provider, e.Model, e.BatchSize = EmbedLocal, "", 16
	return DatasetEmbedConfig{K: 5, EmbedConfig: e, Pooling: "mean", MaxTokens: 512}
}

// Validate names the first bad field ("embed.k: …").
func (c *DatasetEmbedConfig) Validate() error {
	if c.K < 1 {
		return fmt.Errorf("embed.k: %d is below 1", c.K)
	}
	switch c.Provider {
	case EmbedLocal:
	case teacher.ProviderOpenAI, teacher.ProviderGemini, teacher.ProviderVertex:
		if err := c.EmbedConfig.Validate(); err != nil {
			return fmt.Errorf("embed.%w", err)
		}
		return nil
	default:
		return fmt.Errorf("embed.provider: %q is not one of local, openai, gemini, vertex", c.Provider)
	}
	switch {
	case c.Pooling != "mean" && c.Pooling != "last":
		return fmt.Errorf("embed.pooling: %q is not mean or last", c.Pooling)
	case c.MaxTokens < 1:
		return fmt.Errorf("embed.max_tokens: %d is below 1", c.MaxTokens)
	case c.BatchSize < 1:
		return fmt.Errorf("embed.batch_size: %d is below 1", c.BatchSize)
	}
	return nil
}

// localModel is the local embedder's model directory.
func (c *DatasetEmbedConfig) localModel(student *StudentConfig) string {
	if c.Model == "" {
		return student.Model
	}
	return c.Model
}

// embedID is the identity of the embedder spec's settings name, without
// loading it: for an API its provider, model and dimensions; for a local
// model its files' hash, pooling and token limit.
func embedID(ctx context.Context, spec *job.Spec) (string, error) {
	c := &spec.Section("dataset").(*DatasetConfig).Embed
	if c.Provider != EmbedLocal {
		return c.ID(), nil
	}
	h, err := studentHash(ctx, &StudentConfig{Model: c.localModel(spec.Section("student").(*StudentConfig))})
	if err != nil {
		return "", fmt.Errorf("dataset.embed.model: %w", err)
	}
	id := fmt.Sprintf("local:%s:%s:%d", h, c.Pooling, c.MaxTokens)
	if sc := spec.Section("student").(*StudentConfig); sc.heldDType() != dtypes.Float32 {
		id += ":" + sc.DType // weights rounded to it give other vectors
	}
	return id, nil
}

// embedNew builds the spec's embedder behind the cache in the run's store;
// done releases what a local model holds.
func embedNew(ctx context.Context, env *job.Env) (cache *teacher.EmbedCache, done func(), err error) {
	spec := env.Spec()
	c := spec.Section("dataset").(*DatasetConfig).Embed
	var (
		e     teacher.Embedder
		chunk int
	)
	done = func() {}
	if c.Provider == EmbedLocal {
		var l *localEmbedder
		if l, err = newLocalEmbedder(ctx, spec); err == nil {
			e, done = l, l.close
		}
		chunk = 8 * c.BatchSize
	} else {
		e, err = teacher.NewEmbedder(ctx, c.EmbedConfig, &teacher.Options{Logger: env.Log()})
		chunk = c.Concurrency * c.BatchSize
	}
	if err != nil {
		return nil, nil, fmt.Errorf("dataset.embed: %w", err)
	}
	return teacher.NewEmbedCache(e, env.Store(), chunk, env.Log()), done, nil
}

// embedSel is the embed-sel pool: per difficult question its k nearest
// training questions, each with the teacher's answers (dataset.sel's
// answers and filter).
func (b *datasetBuild) embedSel(ctx context.Context, env *job.Env, train []problems.Problem) ([]datasetItem, error) {
	hard, err := readRows[Difficult](ctx, env, "difficulty", DifficultFile)
	if err != nil {
		return nil, err
	}
	sort.SliceStable(hard, func(i, j int) bool { return hard[i].ID < hard[j].ID })
	hard = slices.CompactFunc(hard, func(a, b Difficult) bool { return a.ID == b.ID })
	b.add("difficult", len(hard))
	if len(hard) == 0 || len(train) == 0 {
		return nil, nil
	}
	e, done, err := embedNew(ctx, env)
	if err != nil {
		return nil, err
	}
	texts := make([]string, 0, len(train)+len(hard))
	for _, p := range train {
		texts = append(texts, p.Question)
	}
	for _, d := range hard {
		texts = append(texts, d.Question)
	}
	vecs, err := e.Embed(ctx, texts)
	done()
	b.m["embedder"] = e.ID()
	b.add("embed_cache_hits", int(e.Hits()))
	b.add("embedded", int(e.Misses()))
	if err != nil {
		return nil, err
	}
	near := embedNearest(vecs[len(train):], vecs[:len(train)], b.cfg.Embed.K)

	slot := map[int]int{} // training question → its place in qs
	var qs []string
	for _, n := range near {
		for _, q := range n {
			if _, ok := slot[q]; !ok {
				slot[q] = len(qs)
				qs = append(qs, train[q].Question)
			}
		}
	}
	b.add("picks", len(near)*min(b.cfg.Embed.K, len(train)))
	b.add("questions", len(qs))
	sols, err := b.solve(ctx, qs, b.cfg.Sel.Answers)
	if err != nil {
		return nil, err
	}
	kept := make([][]string, len(qs))
	for q, i := range slot {
		kept[i] = b.correct(sols[i], train[q].Answer, b.cfg.Sel.FilterCorrect)
	}
	var items []datasetItem
	for i, n := range near {
		for rank, q := range n {
			for k, s := range kept[slot[q]] {
				if s != "" {
					items = append(items, datasetItem{key: datasetKey(hard[i].ID, rank, k), ex: Example{
						Messages: datasetMessages(train[q].Question, s), Source: train[q].ID,
						Subject: train[q].Subject, For: hard[i].ID}})
				}
			}
		}
	}
	return items, nil
}

// embedNearest returns, for each query, the indices of its k nearest
// candidates by cosine similarity, nearest first; ties go to the lower
// index. A zero vector is similar to nothing (similarity 0).
func embedNearest(queries, cands [][]float32, k int) [][]int {
	unit := func(vs [][]float32) [][]float32 {
		out := make([][]float32, len(vs))
		for i, v := range vs {
			var n float64
			for _, x := range v {
				n += float64(x) * float64(x)
			}
			out[i] = make([]float32, len(v))
			if n > 0 {
				s := float32(1 / math.Sqrt(n))
				for j, x := range v {
					out[i][j] = x * s
				}
			}
		}
		return out
	}
	qs, cs := unit(queries), unit(cands)
	k = min(k, len(cs))
	out := make([][]int, len(qs))
	p := pool.New().WithMaxGoroutines(runtime.GOMAXPROCS(0))
	for i, q := range qs {
		p.Go(func() {
			type hit struct {
				sim float32
				j   int
			}
			top := make([]hit, 0, k+1) // nearest first
			for j, c := range cs {
				var s float32
				for d := range min(len(q), len(c)) {
					s += q[d] * c[d]
				}
				if len(top) == k && s <= top[k-1].sim {
					continue // not nearer than the k-th (ties keep the lower index)
				}
				at := sort.Search(len(top), func(n int) bool { return top[n].sim < s })
				top = slices.Insert(top, at, hit{s, j})
				if len(top) > k {
					top = top[:k]
				}
			}
			out[i] = make([]int, len(top))
			for n, h := range top {
				out[i][n] = h.j
			}
		})
	}
	p.Wait()
	return out
}

// embedBucket is the padded length of a batch whose longest text has n
// tokens: a power of two up to 64, then a multiple of 64, so a batch pads
// by less than a quarter past 256 tokens while few graphs are compiled.
func embedBucket(n int) int {
	t := 8
	for t < n && t < 64 {
		t *= 2
	}
	if t < n {
		t = (n + 63) / 64 * 64
	}
	return t
}

// localEmbedder embeds texts with a Hugging Face decoder: the final-norm
// hidden states of the text's first MaxTokens tokens, pooled (mean or the
// last token's). Texts are run in batches of BatchSize, sorted by length,
// padded to embedBucket's lengths.
type localEmbedder struct {
	id        string
	m         *model.Model
	tok       *tokenizer.Tokenizer
	be        backends.Backend
	exec      *mlctx.Exec
	pooling   string
	maxTokens int
	batch     int
}

var _ teacher.Embedder = (*localEmbedder)(nil)

func newLocalEmbedder(ctx context.Context, spec *job.Spec) (*localEmbedder, error) {
	c := &spec.Section("dataset").(*DatasetConfig).Embed
	sc := spec.Section("student").(*StudentConfig)
	id, err := embedID(ctx, spec)
	if err != nil {
		return nil, err
	}
	st, err := openStudent(ctx, nil, &StudentConfig{Model: c.localModel(sc), DType: sc.DType}, "")
	if err != nil {
		return nil, err
	}
	be, err := backend.New(sc.Backend)
	if err != nil {
		return nil, fmt.Errorf("student.backend: %w", err)
	}
	e := &localEmbedder{id: id, m: st.Model, tok: st.Tok, be: be, pooling: c.Pooling, maxTokens: c.MaxTokens, batch: c.BatchSize}
	e.exec, err = mlctx.NewExec(be, st.Model.Ctx, func(ctx *mlctx.Context, tok, pos, val, weights *graph.Node) *graph.Node {
		hidden := model.Hidden(ctx, st.Model.Config, tok, pos, val)                      // [B, T, D]
		return graph.DotGeneral(weights, []int{1}, []int{0}, hidden, []int{1}, []int{0}) // [B, D]
	})
	if err != nil {
		be.Finalize()
		return nil, fmt.Errorf("embed graph: %w", err)
	}
	return e, nil
}

func (e *localEmbedder) ID() string { return e.id }

// close releases the compiled graphs and the backend.
func (e *localEmbedder) close() {
	e.exec.Finalize()
	e.be.Finalize()
}

func (e *localEmbedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	ids := make([][]int, len(texts))
	order := make([]int, len(texts))
	for i, t := range texts {
		ids[i] = e.tok.Encode(t)
		if len(ids[i]) == 0 {
			return nil, fmt.Errorf("embed: text %d has no tokens", i)
		}
		ids[i] = ids[i][:min(len(ids[i]), e.maxTokens)]
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return len(ids[order[a]]) > len(ids[order[b]]) })
	out := make([][]float32, len(texts))
	for lo := 0; lo < len(order); lo += e.batch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		part := order[lo:min(lo+e.batch, len(order))]
		t := embedBucket(len(ids[part[0]]))
		n := e.batch // every batch as wide as the first: one graph per length
		tok, pos, val, w := make([]int32, n*t), make([]int32, n*t), make([]bool, n*t), make([]float32, n*t)
		for r := range n {
			seq := []int{0} // a padding row: one token, pooled and dropped
			if r < len(part) {
				seq = ids[part[r]]
			}
			for j := range t {
				pos[r*t+j] = int32(j)
				if j < len(seq) {
					tok[r*t+j], val[r*t+j] = int32(seq[j]), true
					if e.pooling == "mean" {
						w[r*t+j] = 1 / float32(len(seq))
					}
				}
			}
			if e.pooling == "last" {
				w[r*t+len(seq)-1] = 1
			}
		}
		res, err := e.exec.Exec1(tensors.FromFlatDataAndDimensions(tok, n, t), tensors.FromFlatDataAndDimensions(pos, n, t),
			tensors.FromFlatDataAndDimensions(val, n, t), tensors.FromFlatDataAndDimensions(w, n, t))
		if err != nil {
			return nil, fmt.Errorf("embed: %w", err)
		}
		flat, err := tensors.CopyFlatData[float32](res)
		res.FinalizeAll()
		if err != nil {
			return nil, fmt.Errorf("embed: %w", err)
		}
		d := len(flat) / n
		for r, i := range part {
			out[i] = slices.Clone(flat[r*d : (r+1)*d])
		}
	}
	return out, nil
}
