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
	// Temperature, when set, replaces the Sampling's for this request
	// (e.g. a greedy pass@1 sample among sampled ones, in one batch).
	Temperature *float64
}

// Result is one continuation.
type Result struct {
	Tokens  []int // new tokens, the stop token included when Stopped
	Stopped bool  // ended on a stop token (else on MaxNewTokens or MaxLength)
}

// MaxLength is the longest sequence (prompt and answer) a Generator
// continues, or 0 for no limit. A longrope model (Phi-3.5, Phi-4-mini)
// stops at Config.LongRopeFrom: past it transformers switches every
// position to the long factors and recomputes its cache, which a KV cache
// of keys rotated by the short ones cannot follow. Up to it every token
// is the one transformers would give.
func (c *Config) MaxLength() int {
	if c.LongRope() {
		return c.LongRopeFrom()
	}
	return 0
}

// Generator samples continuations with a KV cache, batching continuously:
// up to MaxBatch sequences decode together, and when one ends, its slot
// takes the next waiting request at once (its prompt is prefilled into that
// row of the cache), so a batch never waits for its longest answer. It
// compiles one prefill, one refill and one decode-step graph per shape;
// every length and count is bucketed to a power of two so that
// compilations stay few.
type Generator struct {
	backend backends.Backend
	model   *Model
	prefill *context.Exec
	refill  *context.Exec
	decode  *context.Exec
	// MinBucket is the smallest prompt/cache length bucket (default 16).
	MinBucket int
	// MaxBatch is the number of sequences decoded together (default 32),
	// rounded up to a power of two: the rows a batch of that size is padded
	// to take requests too.
	MaxBatch int
	// ComputeDType is the dtype of the matrix products (UseComputeDType);
	// zero means float32. Set it before the first Generate.
	ComputeDType dtypes.DType
	// Adapter, when set, acts on every projection as in training
	// (UseAdapter), so a model with LoRA adapters samples as it trains.
	// Set it before the first Generate.
	Adapter Adapter

	// static refills only when every slot is free (batch after batch, as
	// before continuous batching): the benchmark's baseline.
	static bool
	// stats counts the last Generate's graph runs.
	stats genCounts
}

// genCounts counts the graph runs of a Generate.
type genCounts struct {
	prefills, refills, steps int
}

// ErrEmptyPrompt: a request has no prompt tokens.
var ErrEmptyPrompt = errors.New("empty prompt")

// NewGenerator prepares generation for m on backend b.
func NewGenerator(b backends.Backend, m *Model) (*Generator, error) {
	gen := &Generator{backend: b, model: m, MinBucket: 16, MaxBatch: 32}
	cfg := m.Config
	hooks := func(ctx *context.Context, g *Graph) {
		UseComputeDType(ctx, g, gen.ComputeDType)
		if gen.Adapter != nil {
			UseAdapter(ctx, g, gen.Adapter)
		}
	}
	var err error
	gen.prefill, err = context.NewExec(b, m.Ctx, func(ctx *context.Context, in []*Node) []*Node {
		hooks(ctx, in[0].Graph())
		return prefillGraph(ctx, cfg, in[0], in[1], in[2].Shape().Dimensions[0])
	})
	if err != nil {
		return nil, err
	}
	gen.refill, err = context.NewExec(b, m.Ctx, func(ctx *context.Context, in []*Node) []*Node {
		hooks(ctx, in[0].Graph())
		return refillGraph(ctx, cfg, in[0], in[1], in[2], in[3:])
	})
	if err != nil {
		return nil, err
	}
	gen.decode, err = context.NewExec(b, m.Ctx, func(ctx *context.Context, in []*Node) []*Node {
		hooks(ctx, in[0].Graph())
		return decodeGraph(ctx, cfg, in[0], in[1], in[2:])
	})
	if err != nil {
		return nil, err
	}
	for _, e := range []*context.Exec{gen.prefill, gen.refill, gen.decode} {
		e.SetMaxCache(-1)
	}
	return gen, nil
}

// prefillGraph runs the prompts tokens [B, T] (right-padded; lengths [B])
// through the model and returns the logits [B, V] of each last prompt token
// followed by every layer's keys and values as caches for sequences of up
// to cacheLen tokens (Config.CacheLen), in the compute dtype (a bf16 cache
// takes half the memory of an f32 one).
func prefillGraph(ctx *context.Context, cfg *Config, tokens, lengths *Node, cacheLen int) []*Node {
	g := tokens.Graph()
	b, t := tokens.Shape().Dimensions[0], tokens.Shape().Dimensions[1]
	positions := Iota(g, shapes.Make(dtypes.Int32, b, t), 1)
	valid := LessThan(positions, InsertAxes(lengths, -1))
	caches := make([]*Node, 2*cfg.NumHiddenLayers)
	dt := ComputeDType(ctx, g) // the cache holds keys and values as the products compute them
	var span *Node             // only longrope reads it (decoder)
	if cfg.LongRope() {
		span = InsertAxes(lengths, -1)
	}
	hidden := decoder(ctx, cfg, tokens, positions, span, causalMasks(valid), func(layer int, k, v *Node) (*Node, *Node) {
		n := cfg.CacheLen(layer, cacheLen)
		caches[2*layer], caches[2*layer+1] = toCache(k, lengths, n, dt), toCache(v, lengths, n, dt)
		return k, v
	})
	last := ConvertDType(Equal(positions, InsertAxes(AddScalar(lengths, -1), -1)), dtypes.Float32) // [B, T]
	hLast := DotGeneral(last, []int{1}, []int{0}, hidden, []int{1}, []int{0})                      // [B, D]
	return append([]*Node{LMHead(ctx, cfg, hLast)}, caches...)
}

// CacheLen is how many keys layer caches for sequences of up to l tokens:
// l, or for a layer with a sliding window W < l a ring of W slots, where
// position p is kept in slot p mod W (the window never sees further back).
// Gemma 3's and Mistral's long answers so hold a fraction of a full cache.
func (c *Config) CacheLen(layer, l int) int {
	if w := c.LayerWindow(layer); w > 0 && w < l {
		return w
	}
	return l
}

// toCache turns a prompt's keys or values x [B, K, T, E] (lengths [B])
// into a cache of n slots in dtype dt: zero-padded when the prompt fits,
// else a ring (Config.CacheLen) whose slot j holds the newest prompt
// position p ≡ j (mod n).
func toCache(x, lengths *Node, n int, dt dtypes.DType) *Node {
	g := x.Graph()
	x = ConvertDType(x, dt)
	d := x.Shape().Dimensions
	b, t := d[0], d[2]
	if t <= n {
		if t == n {
			return x
		}
		return Concatenate([]*Node{x, Zeros(g, shapes.Make(x.DType(), b, d[1], n-t, d[3]))}, 2)
	}
	slot := Iota(g, shapes.Make(dtypes.Int32, b, n), 1)
	back := Sub(InsertAxes(AddScalar(lengths, -1), -1), slot) // last - j: the newest p ≡ j is j + n·⌊back/n⌋
	p := Add(slot, MulScalar(DivScalar(Max(back, ZerosLike(back)), n), n))
	p = Where(GreaterOrEqual(back, ZerosLike(back)), p, ZerosLike(p))         // no such position: any, decoding masks it
	idx := Stack([]*Node{Iota(g, shapes.Make(dtypes.Int32, b, n), 0), p}, -1) // [B, n, 2]
	rows := Gather(TransposeAllAxes(x, 0, 2, 1, 3), idx)                      // [B, n, K, E]
	return TransposeAllAxes(rows, 0, 2, 1, 3)
}

// refillGraph prefills new prompts tokens [N, T] (right-padded; lengths
// [N]) into rows slots [N] of the caches [B, K, L, E] and returns their last
// prompt tokens' logits [N, V] followed by the caches with those rows
// replaced; a slot outside [0, B) (a padding row) replaces nothing. The
// prompts' keys and values are computed for N rows only, then gathered into
// place (SimpleGo has no DynamicUpdateSlice).
func refillGraph(ctx *context.Context, cfg *Config, tokens, lengths, slots *Node, caches []*Node) []*Node {
	g := tokens.Graph()
	b, n := caches[0].Shape().Dimensions[0], tokens.Shape().Dimensions[0]
	// The longest cache is the sequence length the caches were made for,
	// or (every layer a ring) the window, which Config.CacheLen keeps.
	l := 0
	for _, c := range caches {
		l = max(l, c.Shape().Dimensions[2])
	}
	out := prefillGraph(ctx, cfg, tokens, lengths, l)
	rows := Equal(Iota(g, shapes.Make(dtypes.Int32, b, n), 0), BroadcastToDims(InsertAxes(slots, 0), b, n)) // [B, N]: row b takes prompt j
	taken := ReduceLogicalOr(rows, 1)                                                                       // [B]
	from := ArgMax(ConvertDType(rows, dtypes.Float32), 1, dtypes.Int32)                                     // [B]: which prompt (0 when none)
	for i, c := range caches {
		dims := c.Shape().Dimensions
		fresh := Gather(out[1+i], InsertAxes(from, -1)) // [B, K, L, E]
		out[1+i] = Where(BroadcastToDims(Reshape(taken, b, 1, 1, 1), dims...), fresh, c)
	}
	return out
}

// decodeGraph feeds one token per sequence, tokens [B] at positions pos [B],
// and returns the logits [B, V] and the caches with this step's keys and
// values written at pos (in a ring cache, Config.CacheLen, at pos mod W).
// The step sees the cached keys at or before pos, and with a sliding
// window W only those after pos-W. SimpleGo has no DynamicUpdateSlice, so
// the write is a scatter-min of -inf then a scatter-max of the new values
// into those slots (exactly the new values): on a donated cache (round
// donates it) SimpleGo scatters in place, touching only the B·K·E values
// written rather than the whole cache. Attention reads the cache back in
// the keys' dtype.
func decodeGraph(ctx *context.Context, cfg *Config, tokens, pos *Node, caches []*Node) []*Node {
	g := tokens.Graph()
	b := tokens.Shape().Dimensions[0]
	posCol := InsertAxes(pos, -1) // [B, 1]
	// A window's mask and the (row, head, slot) indices [B, K, 3] the step
	// writes at, the same for every layer with that window (whose caches
	// are all as long).
	nkv := cfg.NumKeyValueHeads
	rk := shapes.Make(dtypes.Int32, b, nkv)
	type step struct{ mask, idx *Node }
	steps := map[int]step{}
	stepOf := func(layer int) step {
		w := cfg.LayerWindow(layer)
		if st, ok := steps[w]; ok {
			return st
		}
		n := caches[2*layer].Shape().Dimensions[2]
		slots := Iota(g, shapes.Make(dtypes.Int32, b, n), 1)
		mask, slot := attends(w, posCol, slots), pos
		if w > 0 && n == w {
			// A ring: slot j holds the newest position ≡ j (mod W), which
			// is inside the window; until pos reaches W-1 only the slots
			// j <= pos hold one yet.
			mask, slot = attends(0, posCol, slots), ModScalar(pos, n)
		}
		st := step{InsertAxes(mask, 1), // [B, 1(T), n]
			Stack([]*Node{Iota(g, rk, 0), Iota(g, rk, 1), BroadcastToDims(Reshape(slot, b, 1), b, nkv)}, -1)}
		steps[w] = st
		return st
	}
	// What the scatter-min writes first: every cache has the same dtype and head size.
	cdims := caches[0].Shape().Dimensions
	negInf := BroadcastToDims(Infinity(g, caches[0].DType(), -1), b, nkv, cdims[3])
	masks := func(w int) *Node {
		for i := range cfg.NumHiddenLayers {
			if cfg.LayerWindow(i) == w {
				return stepOf(i).mask
			}
		}
		panic(fmt.Sprintf("model: no layer has window %d", w))
	}
	out := make([]*Node, len(caches))
	var span *Node // only longrope reads it (decoder)
	if cfg.LongRope() {
		span = AddScalar(posCol, 1)
	}
	hidden := decoder(ctx, cfg, InsertAxes(tokens, -1), posCol, span, masks, func(layer int, k, v *Node) (*Node, *Node) {
		idx := stepOf(layer).idx
		for j, x := range []*Node{k, v} {
			c := caches[2*layer+j]
			x = Reshape(ConvertDType(x, c.DType()), b, nkv, -1) // [B, K, 1, E] → [B, K, E]
			out[2*layer+j] = ScatterMax(ScatterMin(c, idx, negInf, false, true), idx, x, false, true)
		}
		return ConvertDType(out[2*layer], k.DType()), ConvertDType(out[2*layer+1], v.DType())
	})
	return append([]*Node{LMHead(ctx, cfg, Squeeze(hidden, 1))}, out...)
}

// Bucket rounds n up to a power of two, at least min: how the sampler sizes
// its batch (min 1) and its prompt and cache lengths (min MinBucket).
func Bucket(n, min int) int {
	b := min
	for b < n {
		b *= 2
	}
	return b
}

// Generate continues every request, in the order given. Requests are
// taken in order of prompt length and decoded MaxBatch at a time with
// continuous batching; requests whose prompt and answer need a longer cache
// (a bigger power of two) are decoded in a later round, so that short ones
// do not pay for the longest. A result depends only on its request (prompt
// and seed), never on the others.
func (gen *Generator) Generate(reqs []Request, s Sampling) ([]Result, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	for i, r := range reqs {
		if len(r.Prompt) == 0 {
			return nil, fmt.Errorf("request %d: %w", i, ErrEmptyPrompt)
		}
		if t := r.Temperature; t != nil && (*t < 0 || math.IsNaN(*t)) {
			return nil, fmt.Errorf("request %d: temperature must be >= 0, got %g", i, *t)
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
	cacheLen := func(i int) int { return Bucket(len(reqs[i].Prompt)+s.MaxNewTokens, gen.MinBucket) }
	gen.stats = genCounts{}
	results := make([]Result, len(reqs))
	for start := 0; start < len(order); {
		end := start + 1 // one round: the requests that share a cache length
		for end < len(order) && cacheLen(order[end]) == cacheLen(order[start]) {
			end++
		}
		if err := gen.round(reqs, order[start:end], cacheLen(order[start]), s, results); err != nil {
			return nil, err
		}
		start = end
	}
	return results, nil
}

// round decodes the requests queue (indices into reqs, by prompt length)
// with caches of length l, writing results[i] for each.
func (gen *Generator) round(reqs []Request, queue []int, l int, s Sampling, results []Result) (err error) {
	b := Bucket(min(max(gen.MaxBatch, 1), len(queue)), 1)
	v, limit := gen.model.Config.VocabSize, gen.model.Config.MaxLength()
	var (
		caches []*tensors.Tensor
		logits = make([]float32, b*v) // each row's newest logits
		slot   = make([]int, b)       // the request in each row, -1 when free
		fresh  = make([]bool, b)      // logits of the row not sampled yet
		pos    = make([]int32, b)     // where the row's next token goes
		next   = make([]int32, b)
		rngs   = make([]*rand.Rand, b)
	)
	for i := range slot {
		slot[i] = -1
	}
	defer func() {
		for _, t := range caches {
			t.FinalizeAll()
		}
	}()
	for {
		// Sample every row whose logits are new, each from its own
		// generator.
		var wg sync.WaitGroup
		picked := make([]int, b)
		for i := range b {
			if fresh[i] {
				si := s
				if t := reqs[slot[i]].Temperature; t != nil {
					si.Temperature = *t
				}
				wg.Go(func() { picked[i] = pick(logits[i*v:(i+1)*v], si, rngs[i]) })
			}
		}
		wg.Wait()
		for i := range b {
			if !fresh[i] {
				continue
			}
			fresh[i] = false
			r, tok := &results[slot[i]], picked[i]
			r.Tokens = append(r.Tokens, tok)
			next[i] = int32(tok)
			if slices.Contains(s.StopTokens, tok) {
				r.Stopped = true
				slot[i] = -1
			} else if n := len(r.Tokens); n >= s.MaxNewTokens || (limit > 0 && len(reqs[slot[i]].Prompt)+n >= limit) {
				slot[i] = -1
			}
		}
		var free []int
		for i := range b {
			if slot[i] < 0 {
				free = append(free, i)
			}
		}
		if len(free) == len(slot) && len(queue) == 0 {
			return nil
		}
		if len(queue) > 0 && len(free) > 0 && (!gen.static || len(free) == len(slot)) {
			n := min(len(free), len(queue))
			if caches, err = gen.fill(reqs, queue[:n], free[:n], l, caches, logits); err != nil {
				return err
			}
			for j, i := range free[:n] {
				slot[i], fresh[i], pos[i] = queue[j], true, int32(len(reqs[queue[j]].Prompt))
				rngs[i] = requestRNG(reqs[queue[j]].Seed)
			}
			queue = queue[n:]
			continue // sample the new rows' first tokens
		}
		// One decode step for every row; free rows decode a dummy token
		// at position 0, which the next fill of that row overwrites.
		for i := range b {
			if slot[i] < 0 {
				next[i], pos[i] = 0, 0
			}
		}
		// The caches are donated: the step writes its keys and values into
		// them in place where the backend can (SimpleGo), and the old
		// tensors are invalid afterwards either way.
		args := []any{tensors.FromFlatDataAndDimensions(slices.Clone(next), b), tensors.FromFlatDataAndDimensions(slices.Clone(pos), b)}
		for _, c := range caches {
			d, err := DonateTensorBuffer(c, gen.backend, 0)
			if err != nil {
				return fmt.Errorf("decode step %d: %w", gen.stats.steps, err)
			}
			args = append(args, d)
		}
		caches = nil // donated: nothing left to free if the step fails
		outs, err := gen.decode.Exec(args...)
		if err != nil {
			return fmt.Errorf("decode step %d: %w", gen.stats.steps, err)
		}
		gen.stats.steps++
		caches = outs[1:]
		copy(logits, tensors.MustCopyFlatData[float32](outs[0]))
		outs[0].FinalizeAll()
		for i := range b {
			if slot[i] >= 0 {
				fresh[i] = true
				pos[i]++
			}
		}
	}
}

// fill prefills the prompts of requests take (indices into reqs) into rows
// rows of caches (all b rows from scratch when caches is nil) and writes
// their last prompt tokens' logits into those rows of logits [b, V]. It
// returns the new caches; the old ones are freed.
func (gen *Generator) fill(reqs []Request, take, rows []int, l int, caches []*tensors.Tensor, logits []float32) ([]*tensors.Tensor, error) {
	v := gen.model.Config.VocabSize
	b := len(logits) / v
	n := b // the first fill prefills every row
	if caches != nil {
		n = Bucket(len(take), 1)
	}
	longest := 0
	for _, i := range take {
		longest = max(longest, len(reqs[i].Prompt))
	}
	t := Bucket(longest, gen.MinBucket)
	tokens := make([]int32, n*t)
	lengths := make([]int32, n)
	slots := make([]int32, n)
	for j := range n {
		p, slot := []int{0}, int32(-1) // padding rows: a one-token prompt, no row
		if j < len(take) {
			p, slot = reqs[take[j]].Prompt, int32(rows[j])
		}
		for k, tok := range p {
			tokens[j*t+k] = int32(tok)
		}
		lengths[j], slots[j] = int32(len(p)), slot
	}
	var (
		outs []*tensors.Tensor
		err  error
	)
	if caches == nil {
		// rows are 0..len(take)-1 here: the request order fills the slots.
		outs, err = gen.prefill.Exec(tensors.FromFlatDataAndDimensions(tokens, n, t),
			tensors.FromFlatDataAndDimensions(lengths, n), tensors.FromShape(shapes.Make(dtypes.Int8, l)))
		gen.stats.prefills++
	} else {
		args := []any{tensors.FromFlatDataAndDimensions(tokens, n, t), tensors.FromFlatDataAndDimensions(lengths, n),
			tensors.FromFlatDataAndDimensions(slots, n)}
		for _, c := range caches {
			args = append(args, c)
		}
		outs, err = gen.refill.Exec(args...)
		gen.stats.refills++
	}
	if err != nil {
		return caches, fmt.Errorf("prefill: %w", err)
	}
	for _, c := range caches {
		c.FinalizeAll()
	}
	fresh := tensors.MustCopyFlatData[float32](outs[0])
	outs[0].FinalizeAll()
	for j := range take {
		copy(logits[rows[j]*v:(rows[j]+1)*v], fresh[j*v:(j+1)*v])
	}
	return outs[1:], nil
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
