package model

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// Sampling is how Generate picks tokens.
type Sampling struct {
	// Temperature divides the logits; 0 is greedy (argmax).
	Temperature float64 `yaml:"temperature"`
	// TopK keeps the k most likely tokens (0: all).
	TopK int `yaml:"top_k"`
	// TopP keeps the smallest set of most likely tokens whose probability
	// reaches p (0 or 1: all).
	TopP float64 `yaml:"top_p"`
	// MaxNewTokens bounds each continuation.
	MaxNewTokens int `yaml:"max_new_tokens"`
	// StopTokens end a continuation (EOS, end-of-turn); the stop token is
	// kept as the last token of the result.
	StopTokens []int `yaml:"stop_tokens"`
}

// Validate names the bad field.
func (s Sampling) Validate() error {
	switch {
	case s.Temperature < 0 || math.IsNaN(s.Temperature):
		return fmt.Errorf("sampling.temperature: must be >= 0, got %g", s.Temperature)
	case s.TopK < 0:
		return fmt.Errorf("sampling.top_k: must be >= 0, got %d", s.TopK)
	case s.TopP < 0 || s.TopP > 1:
		return fmt.Errorf("sampling.top_p: must be in [0, 1], got %g", s.TopP)
	case s.MaxNewTokens <= 0:
		return fmt.Errorf("sampling.max_new_tokens: must be positive, got %d", s.MaxNewTokens)
	}
	return nil
}

// Request is one prompt to continue. Seed drives this sequence's draws
// alone, so a continuation does not depend on what else is in the batch.
type Request struct {
	Prompt []int
	Seed   uint64
}

// Result is one continuation.
type Result struct {
	Tokens  []int // new tokens, the stop token included when Stopped
	Stopped bool  // ended on a stop token (else on MaxNewTokens)
}

// Generator samples continuations with a KV cache. It compiles one prefill
// graph and one decode-step graph per (batch, prompt length, cache length)
// bucket; buckets are powers of two so that compilations stay few.
type Generator struct {
	backend backends.Backend
	model   *Model
	prefill *context.Exec
	decode  *context.Exec
	// MinBucket is the smallest prompt/cache length bucket (default 16).
	MinBucket int
	// MaxBatch bounds the sequences decoded together (default 32); more
	// requests are split into batches of similar prompt length.
	MaxBatch int
	// ComputeDType is the dtype of the matrix products (UseComputeDType);
	// zero means float32. Set it before the first Generate.
	ComputeDType dtypes.DType
	// Adapter, when set, acts on every projection as in training
	// (UseAdapter), so a model with LoRA adapters samples as it trains.
	// Set it before the first Generate.
	Adapter Adapter
}

// ErrEmptyPrompt: a request has no prompt tokens.
var ErrEmptyPrompt = errors.New("empty prompt")

// NewGenerator prepares generation for m on backend b.
func NewGenerator(b backends.Backend, m *Model) (*Generator, error) {
	gen := &Generator{backend: b, model: m, MinBucket: 16, MaxBatch: 32}
	cfg := m.Config
	var err error
	gen.prefill, err = context.NewExec(b, m.Ctx, func(ctx *context.Context, in []*Node) []*Node {
		tokens, lengths, cacheLen := in[0], in[1], in[2].Shape().Dimensions[0]
		UseComputeDType(ctx, tokens.Graph(), gen.ComputeDType)
		if gen.Adapter != nil {
			UseAdapter(ctx, tokens.Graph(), gen.Adapter)
		}
		return prefillGraph(ctx, cfg, tokens, lengths, cacheLen)
	})
	if err != nil {
		return nil, err
	}
	gen.decode, err = context.NewExec(b, m.Ctx, func(ctx *context.Context, in []*Node) []*Node {
		UseComputeDType(ctx, in[0].Graph(), gen.ComputeDType)
		if gen.Adapter != nil {
			UseAdapter(ctx, in[0].Graph(), gen.Adapter)
		}
		return decodeGraph(ctx, cfg, in[0], in[1], in[2:])
	})
	if err != nil {
		return nil, err
	}
	gen.prefill.SetMaxCache(-1)
	gen.decode.SetMaxCache(-1)
	return gen, nil
}

// prefillGraph runs the prompts tokens [B, T] (right-padded; lengths [B])
// through the model and returns the logits [B, V] of each last prompt token
// followed by every layer's keys and values, zero-padded to cacheLen.
func prefillGraph(ctx *context.Context, cfg *Config, tokens, lengths *Node, cacheLen int) []*Node {
	g := tokens.Graph()
	b, t := tokens.Shape().Dimensions[0], tokens.Shape().Dimensions[1]
	positions := Iota(g, shapes.Make(dtypes.Int32, b, t), 1)
	valid := LessThan(positions, InsertAxes(lengths, -1))
	caches := make([]*Node, 2*cfg.NumHiddenLayers)
	pad := func(x *Node) *Node { // [B, K, T, E] → [B, K, cacheLen, E]
		d := x.Shape().Dimensions
		if cacheLen == t {
			return x
		}
		return Concatenate([]*Node{x, Zeros(g, shapes.Make(x.DType(), d[0], d[1], cacheLen-t, d[3]))}, 2)
	}
	hidden := decoder(ctx, cfg, tokens, positions, causalMask(cfg, valid), func(layer int, k, v *Node) (*Node, *Node) {
		caches[2*layer], caches[2*layer+1] = pad(k), pad(v)
		return k, v
	})
	last := ConvertDType(Equal(positions, InsertAxes(AddScalar(lengths, -1), -1)), dtypes.Float32) // [B, T]
	hLast := DotGeneral(last, []int{1}, []int{0}, hidden, []int{1}, []int{0})                      // [B, D]
	return append([]*Node{LMHead(ctx, cfg, hLast)}, caches...)
}

// decodeGraph feeds one token per sequence, tokens [B] at positions pos [B],
// and returns the logits [B, V] and the caches with this step's keys and
// values written at pos. The step sees the cached keys at or before pos, and
// with a sliding window W only those after pos-W (the cache keeps older keys
// but masks them). The write is a select over a one-hot of pos
// (SimpleGo has no DynamicUpdateSlice), so one graph serves every step.
func decodeGraph(ctx *context.Context, cfg *Config, tokens, pos *Node, caches []*Node) []*Node {
	g := tokens.Graph()
	b, l := tokens.Shape().Dimensions[0], caches[0].Shape().Dimensions[2]
	slots := Iota(g, shapes.Make(dtypes.Int32, b, l), 1)
	posCol := InsertAxes(pos, -1)                      // [B, 1]
	mask := InsertAxes(attends(cfg, posCol, slots), 1) // [B, 1(T), L]: the cached keys in the window
	write := Reshape(Equal(slots, posCol), b, 1, l, 1)
	out := make([]*Node, len(caches))
	hidden := decoder(ctx, cfg, InsertAxes(tokens, -1), posCol, mask, func(layer int, k, v *Node) (*Node, *Node) {
		for j, x := range []*Node{k, v} {
			c := caches[2*layer+j]
			dims := c.Shape().Dimensions
			out[2*layer+j] = Where(BroadcastToDims(write, dims...), BroadcastToDims(x, dims...), c)
		}
		return out[2*layer], out[2*layer+1]
	})
	return append([]*Node{LMHead(ctx, cfg, Squeeze(hidden, 1))}, out...)
}

// bucket rounds n up to a power of two, at least min.
func bucket(n, min int) int {
	b := min
	for b < n {
		b *= 2
	}
	return b
}

// Generate continues every request, in the order given. Prompts may differ
// in length: requests are grouped by prompt length into batches of at most
// MaxBatch, each padded to a power of two. A result depends only on its
// request (prompt and seed), never on the others.
func (gen *Generator) Generate(reqs []Request, s Sampling) ([]Result, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	for i, r := range reqs {
		if len(r.Prompt) == 0 {
			return nil, fmt.Errorf("request %d: %w", i, ErrEmptyPrompt)
		}
		for _, tok := range r.Prompt {
			if tok < 0 || tok >= gen.model.Config.VocabSize {
				return nil, fmt.Errorf("request %d: token %d outside the vocabulary [0, %d)", i, tok, gen.model.Config.VocabSize)
			}
		}
	}
	order := make([]int, len(reqs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return len(reqs[a].Prompt) - len(reqs[b].Prompt) })
	results := make([]Result, len(reqs))
	for start := 0; start < len(order); start += max(gen.MaxBatch, 1) {
		idx := order[start:min(start+max(gen.MaxBatch, 1), len(order))]
		batch := make([]Request, len(idx))
		for j, i := range idx {
			batch[j] = reqs[i]
		}
		res, err := gen.generateBatch(batch, s)
		if err != nil {
			return nil, err
		}
		for j, i := range idx {
			results[i] = res[j]
		}
	}
	return results, nil
}

// generateBatch decodes one batch of valid requests together.
func (gen *Generator) generateBatch(reqs []Request, s Sampling) ([]Result, error) {
	maxPrompt := 0
	for _, r := range reqs {
		maxPrompt = max(maxPrompt, len(r.Prompt))
	}
	b := bucket(len(reqs), 1)
	t := bucket(maxPrompt, gen.MinBucket)
	l := bucket(maxPrompt+s.MaxNewTokens, gen.MinBucket)
	tokens := make([]int32, b*t)
	lengths := make([]int32, b)
	for i := range b {
		p := []int{0}
		if i < len(reqs) {
			p = reqs[i].Prompt
		}
		for j, tok := range p {
			tokens[i*t+j] = int32(tok)
		}
		lengths[i] = int32(len(p))
	}
	outs, err := gen.prefill.Exec(tensors.FromFlatDataAndDimensions(tokens, b, t),
		tensors.FromFlatDataAndDimensions(lengths, b), tensors.FromShape(shapes.Make(dtypes.Int8, l)))
	if err != nil {
		return nil, fmt.Errorf("prefill: %w", err)
	}
	rngs := make([]*rand.Rand, len(reqs))
	for i, r := range reqs {
		rngs[i] = requestRNG(r.Seed)
	}
	results := make([]Result, len(reqs))
	done := make([]bool, b)
	for i := len(reqs); i < b; i++ {
		done[i] = true
	}
	pos := slices.Clone(lengths)
	next := make([]int32, b)
	for step := 0; ; step++ {
		logits := tensors.MustCopyFlatData[float32](outs[0])
		v := gen.model.Config.VocabSize
		picked := make([]int, len(reqs))
		var wg sync.WaitGroup
		for i := range reqs { // each sequence draws from its own generator
			if !done[i] {
				wg.Go(func() { picked[i] = pick(logits[i*v:(i+1)*v], s, rngs[i]) })
			}
		}
		wg.Wait()
		for i := range reqs {
			if done[i] {
				continue
			}
			tok := picked[i]
			results[i].Tokens = append(results[i].Tokens, tok)
			next[i] = int32(tok)
			if slices.Contains(s.StopTokens, tok) {
				results[i].Stopped, done[i] = true, true
			} else if len(results[i].Tokens) >= s.MaxNewTokens {
				done[i] = true
			}
		}
		if !slices.Contains(done, false) {
			for _, t := range outs {
				t.FinalizeAll()
			}
			return results, nil
		}
		args := []any{tensors.FromFlatDataAndDimensions(slices.Clone(next), b), tensors.FromFlatDataAndDimensions(slices.Clone(pos), b)}
		for _, c := range outs[1:] {
			args = append(args, c)
		}
		prev := outs
		outs, err = gen.decode.Exec(args...)
		if err != nil {
			return nil, fmt.Errorf("decode step %d: %w", step, err)
		}
		// Free the previous step's cache now: on an accelerator its memory
		// is not Go heap, and waiting for the garbage collector could run
		// the device out of memory over a long generation.
		for _, t := range prev {
			t.FinalizeAll()
		}
		for i := range pos {
			if pos[i] < int32(l-1) {
				pos[i]++
			}
		}
	}
}

// requestRNG is the generator a request's draws come from: its seed alone.
func requestRNG(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))
}

// pick draws one token from logits under s with rng.
func pick(logits []float32, s Sampling, rng *rand.Rand) int {
	if s.Temperature == 0 {
		best := 0
		for i, x := range logits {
			if x > logits[best] {
				best = i
			}
		}
		return best
	}
	weights, cut := nucleus(logits, s)
	var sum float64
	for _, w := range weights {
		if w >= cut {
			sum += w
		}
	}
	u := rng.Float64() * sum
	last := 0
	for i, w := range weights {
		if w >= cut {
			last = i
			if u -= w; u < 0 {
				return i
			}
		}
	}
	return last
}

// nucleus returns the unnormalised probabilities exp((logit - max)/T) and
// the cut: the tokens kept by top-k and top-p are those whose weight is at
// least cut. It finds the cuts by bisection over a shrinking candidate set
// instead of sorting the vocabulary (151,936 entries at Qwen's size).
func nucleus(logits []float32, s Sampling) (weights []float64, cut float64) {
	hi := float32(math.Inf(-1))
	for _, x := range logits {
		hi = max(hi, x)
	}
	weights = make([]float64, len(logits))
	var total float64
	for i, x := range logits {
		weights[i] = math.Exp(float64(x-hi) / s.Temperature)
		total += weights[i]
	}
	if s.TopK > 0 && s.TopK < len(logits) {
		cut = threshold(weights, 0, func(n int, _ float64) bool { return n >= s.TopK })
	}
	if s.TopP > 0 && s.TopP < 1 {
		var kept float64
		for _, w := range weights {
			if w >= cut {
				kept += w
			}
		}
		cut = threshold(weights, cut, func(_ int, sum float64) bool { return sum >= s.TopP*kept })
	}
	return weights, cut
}

// threshold returns the largest weight τ ≥ floor for which enough(count,
// sum) holds over the weights ≥ τ (floor when none does): a quickselect over
// the weights, expected linear time.
func threshold(weights []float64, floor float64, enough func(n int, sum float64) bool) float64 {
	var cands []float64
	for _, w := range weights {
		if w >= floor {
			cands = append(cands, w)
		}
	}
	best := floor
	aboveN, aboveSum := 0, 0.0 // weights above every candidate: in any set searched
	for len(cands) > 0 {
		pivot := cands[len(cands)/2]
		n, sum := aboveN, aboveSum
		for _, c := range cands {
			if c >= pivot {
				n++
				sum += c
			}
		}
		next := cands[:0]
		if enough(n, sum) {
			best = pivot // τ ≥ pivot works: look above it
			for _, c := range cands {
				if c > pivot {
					next = append(next, c)
				}
			}
		} else {
			aboveN, aboveSum = n, sum // τ < pivot: everything ≥ pivot is in
			for _, c := range cands {
				if c < pivot {
					next = append(next, c)
				}
			}
		}
		cands = next
	}
	return best
}
