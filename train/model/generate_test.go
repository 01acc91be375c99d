package model

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
)

// TestGenerateSampling: a sequence's sample depends on its prompt and seed
// only, not on the batch around it; stop tokens and max_new_tokens end it.
func TestGenerateSampling(t *testing.T) {
	b := testBackend(t)
	m := NewRandom(mustConfig(t, tinyLlama), 3, 0.15)
	gen, err := NewGenerator(b, m)
	if err != nil {
		t.Fatal(err)
	}
	s := Sampling{Temperature: 1, TopP: 0.9, TopK: 40, MaxNewTokens: 10}
	alone, err := gen.Generate([]Request{{Prompt: []int{4, 5, 6}, Seed: 42}}, s)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := gen.Generate([]Request{
		{Prompt: []int{9, 8, 7, 6, 5, 4, 3, 2, 1, 10, 11, 12, 13, 14, 15, 16, 17}, Seed: 1},
		{Prompt: []int{4, 5, 6}, Seed: 42},
		{Prompt: []int{4, 5, 6}, Seed: 43},
	}, s)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(alone[0].Tokens, batch[1].Tokens) {
		t.Errorf("same prompt and seed: alone %v, in a batch %v", alone[0].Tokens, batch[1].Tokens)
	}
	if slices.Equal(batch[1].Tokens, batch[2].Tokens) {
		t.Errorf("seeds 42 and 43 drew the same %v", batch[1].Tokens)
	}
	gen.MaxBatch = 1 // one request per batch: the same continuations
	split, err := gen.Generate([]Request{{Prompt: []int{4, 5, 6}, Seed: 43}, {Prompt: []int{4, 5, 6}, Seed: 42}}, s)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(split[0].Tokens, batch[2].Tokens) || !slices.Equal(split[1].Tokens, batch[1].Tokens) {
		t.Errorf("batches of one: %v %v; together: %v %v", split[0].Tokens, split[1].Tokens, batch[2].Tokens, batch[1].Tokens)
	}
	gen.MaxBatch = 32
	for i, r := range batch {
		if len(r.Tokens) != s.MaxNewTokens || r.Stopped {
			t.Errorf("request %d: %d tokens (stopped %v), want %d", i, len(r.Tokens), r.Stopped, s.MaxNewTokens)
		}
	}
	// Stop on the token the sampler would emit third.
	s.StopTokens = []int{alone[0].Tokens[2]}
	stopped, err := gen.Generate([]Request{{Prompt: []int{4, 5, 6}, Seed: 42}}, s)
	if err != nil {
		t.Fatal(err)
	}
	first := slices.Index(alone[0].Tokens, s.StopTokens[0])
	if !stopped[0].Stopped || !slices.Equal(stopped[0].Tokens, alone[0].Tokens[:first+1]) {
		t.Errorf("stop token %d: got %v (stopped %v), want %v", s.StopTokens[0], stopped[0].Tokens, stopped[0].Stopped, alone[0].Tokens[:first+1])
	}
	if _, err := gen.Generate([]Request{{Prompt: nil}}, s); err == nil {
		t.Error("empty prompt accepted")
	}
	if _, err := gen.Generate([]Request{{Prompt: []int{1}}}, Sampling{MaxNewTokens: 0}); err == nil {
		t.Error("max_new_tokens 0 accepted")
	}
}

func TestPick(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	logits := []float32{0, 3, 2.9, -1, 1}
	if got := pick(logits, Sampling{}, rng); got != 1 {
		t.Errorf("greedy picked %d", got)
	}
	counts := map[int]int{}
	for range 2000 {
		counts[pick(logits, Sampling{Temperature: 1, TopK: 2}, rng)]++
	}
	if len(counts) != 2 || counts[1] < 900 || counts[2] < 800 {
		t.Errorf("top-k 2 draws %v, want only 1 and 2, about evenly", counts)
	}
	counts = map[int]int{}
	for range 2000 {
		counts[pick(logits, Sampling{Temperature: 1, TopP: 0.4}, rng)]++
	}
	if len(counts) != 1 || counts[1] != 2000 {
		t.Errorf("top-p 0.4 draws %v, want only the most likely token", counts)
	}
}

// TestModelGradient: the whole model's loss gradient with the registered
// two-DotGeneral VJP equals the stock gradient.
func TestModelGradient(t *testing.T) {
	b := testBackend(t)
	m := NewRandom(mustConfig(t, tinyQwen2), 5, 0.15)
	const B, T = 2, 6
	tokens, targets := make([]int32, B*T), make([]int32, B*T)
	positions, valid, weights := make([]int32, B*T), make([]bool, B*T), make([]float32, B*T)
	for i := range tokens {
		tokens[i], targets[i], positions[i] = int32(i*7%80), int32(i*11%80), int32(i%T)
		valid[i] = i < T+4
		if valid[i] {
			weights[i] = 1
		}
	}
	grads := func() []float32 {
		exec := mlctx.MustNewExec(b, m.Ctx, func(ctx *mlctx.Context, in []*Node) *Node {
			logits := Forward(ctx, m.Config, in[0], in[1], in[2])
			loss := CrossEntropy(logits, in[3], in[4])
			w := ctx.InAbsPath("/model/layers/1/self_attn/k_proj").GetVariable("weight").ValueGraph(loss.Graph())
			e := ctx.InAbsPath("/model/embed_tokens").GetVariable("weight").ValueGraph(loss.Graph())
			g := Gradient(loss, w, e)
			return Concatenate([]*Node{Reshape(g[0], -1), Reshape(g[1], -1)}, 0)
		})
		return tensors.MustCopyFlatData[float32](exec.MustExec1(
			tensors.FromFlatDataAndDimensions(tokens, B, T), tensors.FromFlatDataAndDimensions(positions, B, T),
			tensors.FromFlatDataAndDimensions(valid, B, T), tensors.FromFlatDataAndDimensions(targets, B, T),
			tensors.FromFlatDataAndDimensions(weights, B, T)))
	}
	VJPRegistration[NodeTypeDotGeneral] = stockDotGeneralVJP
	want := grads()
	RegisterDotGeneralGradient()
	ours := VJPRegistration[NodeTypeDotGeneral]
	got := grads()
	VJPRegistration[NodeTypeDotGeneral] = ours
	var norm float64
	for _, x := range want {
		norm = max(norm, float64(x))
	}
	if d := maxAbsDiff(want, got); d > 1e-5 || norm == 0 {
		t.Errorf("model gradient differs from the stock one by %.2e (max %.2e)", d, norm)
	}
}

// TestNucleus compares the kept set of top-k / top-p with the definition:
// sort by probability, keep the k most likely, then the fewest most likely
// whose probability reaches p.
func TestNucleus(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	logits := make([]float32, 5000)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64() * 3)
	}
	for _, s := range []Sampling{{Temperature: 1, TopP: 0.9}, {Temperature: 0.7, TopK: 50}, {Temperature: 1.3, TopK: 300, TopP: 0.5}, {Temperature: 1}} {
		weights, cut := nucleus(logits, s)
		order := make([]int, len(logits))
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(a, b int) int { return cmp.Compare(logits[b], logits[a]) })
		if s.TopK > 0 {
			order = order[:s.TopK]
		}
		if s.TopP > 0 {
			var total, cum float64
			for _, i := range order {
				total += weights[i]
			}
			for j, i := range order {
				if cum += weights[i]; cum >= s.TopP*total {
					order = order[:j+1]
					break
				}
			}
		}
		want := map[int]bool{}
		for _, i := range order {
			want[i] = true
		}
		for i, w := range weights {
			if (w >= cut) != want[i] {
				t.Fatalf("%+v: token %d kept=%v, definition says %v (kept %d)", s, i, w >= cut, want[i], len(want))
			}
		}
	}
}

// TestGenerateCompilesFewShapes: prompts of any length up to the bucket, in
// batches of similar size, reuse one compiled prefill graph and one decode
// graph (an Exec limited to one graph fails on a second shape).
func TestGenerateCompilesFewShapes(t *testing.T) {
	m := NewRandom(mustConfig(t, tinyLlama), 3, 0.15)
	gen, err := NewGenerator(testBackend(t), m)
	if err != nil {
		t.Fatal(err)
	}
	gen.prefill.SetMaxCache(1)
	gen.decode.SetMaxCache(1)
	s := Sampling{MaxNewTokens: 4}
	for _, lens := range [][]int{{1, 2, 3}, {12, 5, 7, 9}, {4, 4, 11}, {8}} {
		var reqs []Request
		for i, n := range lens {
			p := make([]int, n)
			for j := range p {
				p[j] = (i + j) % 50
			}
			reqs = append(reqs, Request{Prompt: p})
		}
		for len(reqs) < 3 { // batch sizes are bucketed to powers of two: 3 and 4 share one
			reqs = append(reqs, Request{Prompt: []int{1}})
		}
		res, err := gen.Generate(reqs, s)
		if err != nil {
			t.Fatalf("prompt lengths %v: %v", lens, err)
		}
		for i, r := range res {
			if len(r.Tokens) != s.MaxNewTokens {
				t.Errorf("prompt lengths %v: request %d got %d tokens", lens, i, len(r.Tokens))
			}
		}
	}
}

// TestContinuousBatching: with fewer slots than requests, a slot freed by
// an answer that ended takes the next request at once, and every
// continuation is exactly the one its request gets alone; batch after batch
// (static) gives the same answers in more decode steps. Also with a
// sliding window shorter than the prompts, in bf16, and with longrope
// (rows rotating with the short and the long factors side by side, and
// answers ending at Config.MaxLength).
func TestContinuousBatching(t *testing.T) {
	b := testBackend(t)
	for _, c := range []struct {
		name, config string
		dtype        dtypes.DType
	}{{"llama", tinyLlama, dtypes.Float32}, {"mistral window 4", tinyMistral, dtypes.Float32}, {"llama bf16", tinyLlama, dtypes.BFloat16},
		{"gemma3 windowed and global layers", tinyGemma3, dtypes.Float32},
		{"phi4 longrope, answers stopping at its original context", tinyPhi4, dtypes.Float32}} {
		t.Run(c.name, func(t *testing.T) {
			cfg := mustConfig(t, c.config)
			m := NewRandom(cfg, 5, 0.15)
			// Stop on one token in eight: answer lengths spread from 1 to
			// the cap, as real answers do.
			var stop []int
			for tok := 3; tok < cfg.VocabSize; tok += 8 {
				stop = append(stop, tok)
			}
			s := Sampling{Temperature: 1, MaxNewTokens: 20, StopTokens: stop}
			rng := rand.New(rand.NewPCG(7, 7))
			reqs := make([]Request, 30)
			for i := range reqs {
				p := make([]int, 1+rng.IntN(14))
				for j := range p {
					p[j] = rng.IntN(cfg.VocabSize)
				}
				reqs[i] = Request{Prompt: p, Seed: uint64(100 + i)}
			}
			gen, err := NewGenerator(b, m)
			if err != nil {
				t.Fatal(err)
			}
			gen.ComputeDType = c.dtype
			alone := make([]Result, len(reqs))
			for i, r := range reqs {
				res, err := gen.Generate([]Request{r}, s)
				if err != nil {
					t.Fatal(err)
				}
				alone[i] = res[0]
			}
			gen.MaxBatch = 4
			together, err := gen.Generate(reqs, s)
			if err != nil {
				t.Fatal(err)
			}
			continuous := gen.stats
			gen.static = true
			static, err := gen.Generate(reqs, s)
			if err != nil {
				t.Fatal(err)
			}
			stopped, capped := 0, 0
			for i := range reqs {
				if !slices.Equal(together[i].Tokens, alone[i].Tokens) || together[i].Stopped != alone[i].Stopped {
					t.Errorf("request %d: continuous batching %v (stopped %v), alone %v (stopped %v)",
						i, together[i].Tokens, together[i].Stopped, alone[i].Tokens, alone[i].Stopped)
				}
				if !slices.Equal(static[i].Tokens, alone[i].Tokens) {
					t.Errorf("request %d: static batching %v, alone %v", i, static[i].Tokens, alone[i].Tokens)
				}
				if l := cfg.MaxLength(); l > 0 && len(alone[i].Tokens) > max(1, l-len(reqs[i].Prompt)) {
					t.Errorf("request %d: %d prompt and %d new tokens, past the max length %d", i, len(reqs[i].Prompt), len(alone[i].Tokens), l)
				}
				if alone[i].Stopped {
					stopped++
				} else {
					capped++
				}
			}
			if stopped < 5 || capped < 2 {
				t.Fatalf("%d answers stopped and %d reached the cap: the lengths do not spread enough to test refills", stopped, capped)
			}
			if continuous.refills < 5 {
				t.Errorf("%d refills for %d requests in 4 slots", continuous.refills, len(reqs))
			}
			if continuous.steps >= gen.stats.steps {
				t.Errorf("continuous batching took %d decode steps, static %d", continuous.steps, gen.stats.steps)
			}
			t.Logf("%d requests, 4 slots: %d decode steps continuous (%d prefills, %d refills), %d static",
				len(reqs), continuous.steps, continuous.prefills, continuous.refills, gen.stats.steps)
		})
	}
}

// TestContinuousBatchingFewShapes: a realistic mix — prompts of 25 to 60
// tokens, 8 slots, spread answer lengths — compiles one prefill graph, one
// decode graph and a few refill graphs (prompt buckets 32 and 64 × refill
// counts 1, 2, 4, 8 at most): every new shape compiles a graph, which is
// slow on XLA. An Exec asked for more shapes than its cache allows fails.
func TestContinuousBatchingFewShapes(t *testing.T) {
	m := NewRandom(mustConfig(t, tinyLlama), 7, 0.3)
	gen, err := NewGenerator(testBackend(t), m)
	if err != nil {
		t.Fatal(err)
	}
	gen.MaxBatch = 8
	gen.prefill.SetMaxCache(1)
	gen.decode.SetMaxCache(1)
	gen.refill.SetMaxCache(2 * 4)
	rng := rand.New(rand.NewPCG(9, 9))
	reqs := make([]Request, 48)
	for i := range reqs {
		p := make([]int, 25+rng.IntN(36))
		for j := range p {
			p[j] = rng.IntN(m.Config.VocabSize)
		}
		reqs[i] = Request{Prompt: p, Seed: uint64(i)}
	}
	s := Sampling{Temperature: 1, MaxNewTokens: 40, StopTokens: []int{3, 7, 11, 19, 23, 31}}
	res, err := gen.Generate(reqs, s)
	if err != nil {
		t.Fatal(err)
	}
	stopped := 0
	for _, r := range res {
		if r.Stopped {
			stopped++
		}
	}
	if gen.stats.refills < 8 || stopped == 0 || stopped == len(reqs) {
		t.Errorf("%d refills, %d/%d stopped: not a mix that refills", gen.stats.refills, stopped, len(reqs))
	}
}

// TestRequestTemperature: a request's own temperature replaces the
// Sampling's for it alone: a greedy request among sampled ones continues as
// it does in a greedy Generate.
func TestRequestTemperature(t *testing.T) {
	m := NewRandom(mustConfig(t, tinyLlama), 3, 0.15)
	gen, err := NewGenerator(testBackend(t), m)
	if err != nil {
		t.Fatal(err)
	}
	s := Sampling{Temperature: 1, MaxNewTokens: 12}
	greedy := s
	greedy.Temperature = 0
	zero := 0.0
	prompts := [][]int{{4, 5, 6}, {9, 8, 7, 6}, {1, 2}}
	var mixed, sampled, alone []Request
	for i, p := range prompts {
		mixed = append(mixed, Request{Prompt: p, Seed: uint64(i), Temperature: &zero}, Request{Prompt: p, Seed: uint64(10 + i)})
		alone = append(alone, Request{Prompt: p, Seed: uint64(i)})
		sampled = append(sampled, Request{Prompt: p, Seed: uint64(10 + i)})
	}
	got, err := gen.Generate(mixed, s)
	if err != nil {
		t.Fatal(err)
	}
	wantGreedy, err := gen.Generate(alone, greedy)
	if err != nil {
		t.Fatal(err)
	}
	wantSampled, err := gen.Generate(sampled, s)
	if err != nil {
		t.Fatal(err)
	}
	for i := range prompts {
		if !slices.Equal(got[2*i].Tokens, wantGreedy[i].Tokens) || !slices.Equal(got[2*i+1].Tokens, wantSampled[i].Tokens) {
			t.Errorf("prompt %d: mixed %v %v, want greedy %v and sampled %v", i, got[2*i].Tokens, got[2*i+1].Tokens, wantGreedy[i].Tokens, wantSampled[i].Tokens)
		}
	}
	if slices.Equal(wantGreedy[0].Tokens, wantSampled[0].Tokens) {
		t.Error("greedy and sampled continuations coincide: the test cannot tell them apart")
	}
	bad := -1.0
	if _, err := gen.Generate([]Request{{Prompt: []int{1}, Temperature: &bad}}, s); err == nil {
		t.Error("a negative request temperature was accepted")
	}
}

// TestRingCaches: a layer with a sliding window shorter than the sequence
// caches a ring of that window, the others the whole sequence, through
// prefill and every decode step.
func TestRingCaches(t *testing.T) {
	m := NewRandom(mustConfig(t, tinyGemma3), 5, 0.15) // windows 4, 4 and none
	gen, err := NewGenerator(testBackend(t), m)
	if err != nil {
		t.Fatal(err)
	}
	const l = 64
	tokens := make([]int32, 16)
	outs, err := gen.prefill.Exec(tensors.FromFlatDataAndDimensions(tokens, 1, 16),
		tensors.FromFlatDataAndDimensions([]int32{9}, 1), tensors.FromShape(shapes.Make(dtypes.Int8, l)))
	if err != nil {
		t.Fatal(err)
	}
	want := []int{4, 4, 4, 4, l, l} // keys and values of layers 0, 1, 2
	check := func(when string, caches []*tensors.Tensor) {
		for i, c := range caches {
			if got := c.Shape().Dimensions[2]; got != want[i] {
				t.Errorf("%s: cache %d holds %d positions, want %d", when, i, got, want[i])
			}
		}
	}
	check("prefill", outs[1:])
	args := []any{tensors.FromFlatDataAndDimensions([]int32{3}, 1), tensors.FromFlatDataAndDimensions([]int32{9}, 1)}
	for _, c := range outs[1:] {
		args = append(args, c)
	}
	step, err := gen.decode.Exec(args...)
	if err != nil {
		t.Fatal(err)
	}
	check("decode", step[1:])
}
