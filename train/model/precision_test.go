package model

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
)

// bf16 keeps 8 significant bits. SimpleGo converts float32 to bfloat16 by
// truncation (GoMLX's bfloat16.FromFloat32 drops the low 16 bits: relative
// error up to 2⁻⁸, biased toward zero), XLA on GPU rounds to nearest (2⁻⁹),
// so the CPU figures are the worse case. Measured on the tiny configs (see
// TestBF16ComputeTracksF32's log): relative L2 error of the logits 2.8e-2,
// worst single logit 2.1% of the logits' spread (emulating round-to-nearest
// brings them to about 2e-2 and 1.4e-2: the rest is bf16's precision,
// amplified through the layers of a random model). The bounds leave ≈ 2×.
const (
	bf16LogitRelL2 = 5e-2 // ‖Δ‖₂ / ‖f32 logits‖₂
	bf16LogitMax   = 4e-2 // max |Δ| / (max − min of the f32 logits)
)

// forwardIn runs Forward on a right-padded batch with the matrix products in
// dtype and returns the logits [B·T·V] and the dtypes of every DotGeneral
// of the graph.
func forwardIn(t *testing.T, be backends.Backend, m *Model, dtype dtypes.DType, tokens []int32, b, tl int) (logits []float32, dots []dtypes.DType) {
	t.Helper()
	positions := make([]int32, b*tl)
	valid := make([]bool, b*tl)
	for i := range positions {
		positions[i], valid[i] = int32(i%tl), true
	}
	e, err := mlctx.NewExec(be, m.Ctx, func(ctx *mlctx.Context, tok, pos, val *Node) *Node {
		UseComputeDType(ctx, tok.Graph(), dtype)
		out := Forward(ctx, m.Config, tok, pos, val)
		for _, n := range tok.Graph().Nodes() {
			if n.Type() == NodeTypeDotGeneral {
				dots = append(dots, n.DType())
			}
		}
		return out
	})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Finalize()
	out, err := e.Exec1(tensors.FromFlatDataAndDimensions(tokens, b, tl),
		tensors.FromFlatDataAndDimensions(positions, b, tl), tensors.FromFlatDataAndDimensions(valid, b, tl))
	if err != nil {
		t.Fatal(err)
	}
	defer out.FinalizeAll()
	if out.DType() != dtypes.Float32 {
		t.Errorf("logits dtype %s, want float32", out.DType())
	}
	return tensors.MustCopyFlatData[float32](out), dots
}

func argmax(v []float32) int {
	return slices.Index(v, slices.Max(v))
}

// TestBF16ComputeTracksF32: with bf16 matrix products the logits stay within
// bf16LogitTol of the f32 logits (relative to their spread), the greedy next
// token mostly agrees, every projection and attention product is a bf16
// DotGeneral (RoPE's rotation stays f32), and the weights stay f32.
func TestBF16ComputeTracksF32(t *testing.T) {
	for _, c := range []struct {
		name, cfg string
		dots      int // bf16 DotGenerals per layer (+ lm_head)
	}{{"llama", tinyLlama, 9}, {"qwen2-tied", tinyQwen2, 9}} {
		t.Run(c.name, func(t *testing.T) {
			cfg := mustConfig(t, c.cfg)
			m := NewRandom(cfg, 7, 0.15)
			const b, tl = 3, 12
			rng := rand.New(rand.NewPCG(5, 6))
			tokens := make([]int32, b*tl)
			for i := range tokens {
				tokens[i] = int32(rng.IntN(cfg.VocabSize))
			}
			be := testBackend(t)
			ref, refDots := forwardIn(t, be, m, dtypes.Float32, tokens, b, tl)
			got, dots := forwardIn(t, be, m, dtypes.BFloat16, tokens, b, tl)
			for _, d := range refDots {
				if d != dtypes.Float32 {
					t.Fatalf("f32 graph has a %s DotGeneral", d)
				}
			}
			var nb, nf int
			for _, d := range dots {
				switch d {
				case dtypes.BFloat16:
					nb++
				case dtypes.Float32:
					nf++
				}
			}
			if want := c.dots*cfg.NumHiddenLayers + 1; nb != want || nf != 2*cfg.NumHiddenLayers {
				t.Errorf("bf16 graph: %d bf16 and %d f32 DotGenerals, want %d and %d (RoPE on q and k)", nb, nf, want, 2*cfg.NumHiddenLayers)
			}
			lo, hi := slices.Min(ref), slices.Max(ref)
			spread := float64(hi - lo)
			v := cfg.VocabSize
			worst, agree := 0.0, 0
			var num, den float64
			for i := range ref {
				num += float64(got[i]-ref[i]) * float64(got[i]-ref[i])
				den += float64(ref[i]) * float64(ref[i])
			}
			rel := math.Sqrt(num / den)
			for p := 0; p < b*tl; p++ {
				worst = max(worst, maxAbsDiff(got[p*v:(p+1)*v], ref[p*v:(p+1)*v])/spread)
				if argmax(got[p*v:(p+1)*v]) == argmax(ref[p*v:(p+1)*v]) {
					agree++
				}
			}
			t.Logf("bf16 vs f32 logits: relative L2 %.2e, max |Δ|/spread %.2e (spread %.3g); argmax agrees at %d/%d positions",
				rel, worst, spread, agree, b*tl)
			if rel > bf16LogitRelL2 || math.IsNaN(rel) {
				t.Errorf("bf16 logits: relative L2 error %.2e, want <= %.0e", rel, bf16LogitRelL2)
			}
			if worst > bf16LogitMax || math.IsNaN(worst) {
				t.Errorf("bf16 logits differ from f32 by %.2e of their spread, want <= %.0e", worst, bf16LogitMax)
			}
			if agree < b*tl*9/10 {
				t.Errorf("greedy token agrees at %d/%d positions, want >= 90%%", agree, b*tl)
			}
			for v := range m.Ctx.IterVariables() {
				if v.Shape().DType != dtypes.Float32 {
					t.Errorf("variable %s is %s after a bf16 forward", v.ScopeAndName(), v.Shape().DType)
				}
			}
		})
	}
}

// TestBF16GradientsReachF32Masters: with bf16 matrix products, the gradient
// of the loss with respect to every f32 weight is f32 and close to the f32
// gradient (bf16 products round the backward pass too).
func TestBF16GradientsReachF32Masters(t *testing.T) {
	RegisterDotGeneralGradient()
	be := testBackend(t)
	cfg := mustConfig(t, tinyQwen2)
	m := NewRandom(cfg, 11, 0.15)
	const b, tl = 2, 8
	rng := rand.New(rand.NewPCG(1, 9))
	tokens, targets := make([]int32, b*tl), make([]int32, b*tl)
	weights := make([]float32, b*tl)
	for i := range tokens {
		tokens[i], targets[i], weights[i] = int32(rng.IntN(cfg.VocabSize)), int32(rng.IntN(cfg.VocabSize)), 1
	}
	grads := func(dtype dtypes.DType) (loss float32, gs [][]float32) {
		e, err := mlctx.NewExec(be, m.Ctx, func(ctx *mlctx.Context, tok, tgt, w *Node) []*Node {
			g := tok.Graph()
			UseComputeDType(ctx, g, dtype)
			pos := Iota(g, shapes.Make(dtypes.Int32, b, tl), 1)
			valid := OnesLike(ConvertDType(pos, dtypes.Bool))
			l := CrossEntropy(Forward(ctx, cfg, tok, pos, valid), tgt, w)
			var values []*Node
			for v := range ctx.IterVariables() {
				values = append(values, v.ValueGraph(g))
			}
			return append([]*Node{l}, Gradient(l, values...)...)
		})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Finalize()
		outs, err := e.Exec(tensors.FromFlatDataAndDimensions(tokens, b, tl),
			tensors.FromFlatDataAndDimensions(targets, b, tl), tensors.FromFlatDataAndDimensions(weights, b, tl))
		if err != nil {
			t.Fatal(err)
		}
		for i, o := range outs {
			if o.DType() != dtypes.Float32 {
				t.Fatalf("output %d is %s, want float32", i, o.DType())
			}
			if i == 0 {
				loss = tensors.MustCopyFlatData[float32](o)[0]
			} else {
				gs = append(gs, tensors.MustCopyFlatData[float32](o))
			}
			o.FinalizeAll()
		}
		return loss, gs
	}
	l32, g32 := grads(dtypes.Float32)
	l16, g16 := grads(dtypes.BFloat16)
	var num, den float64
	for i := range g32 {
		for j := range g32[i] {
			d := float64(g16[i][j] - g32[i][j])
			num += d * d
			den += float64(g32[i][j]) * float64(g32[i][j])
		}
	}
	rel := math.Sqrt(num / den)
	t.Logf("loss f32 %.6f bf16 %.6f; gradient relative L2 error %.2e", l32, l16, rel)
	if d := math.Abs(float64(l16 - l32)); d > 1e-2*math.Abs(float64(l32)) {
		t.Errorf("bf16 loss %g vs f32 %g", l16, l32)
	}
	// Measured 3.9e-2 on CPU (truncating bf16): gradients pass through bf16
	// products layer after layer and cancel in the sums over positions.
	if rel > 8e-2 || math.IsNaN(rel) {
		t.Errorf("bf16 gradients differ from f32 by %.2e (relative L2), want <= 8e-2", rel)
	}
}

// TestBF16Generation: greedy generation with bf16 matrix products starts
// like f32 generation (a random model's logits are close together, so later
// tokens may drift once one differs), and its prefill graph computes the
// projections in bf16 and returns a bf16 KV cache (half the memory).
func TestBF16Generation(t *testing.T) {
	be := testBackend(t)
	m := NewRandom(mustConfig(t, tinyLlama), 3, 0.15)
	reqs := []Request{{Prompt: []int{4, 5, 6}}, {Prompt: []int{9, 8, 7, 6, 5}}, {Prompt: []int{1, 30, 60}}, {Prompt: []int{70, 2}}}
	s := Sampling{MaxNewTokens: 4}
	run := func(dt dtypes.DType) []Result {
		gen, err := NewGenerator(be, m)
		if err != nil {
			t.Fatal(err)
		}
		gen.ComputeDType = dt
		res, err := gen.Generate(reqs, s)
		if err != nil {
			t.Fatal(err)
		}
		outs, g, err := gen.prefill.ExecWithGraph(tensors.FromFlatDataAndDimensions([]int32{4, 5, 6, 7}, 1, 4),
			tensors.FromFlatDataAndDimensions([]int32{4}, 1), tensors.FromShape(shapes.Make(dtypes.Int8, 16)))
		if err != nil {
			t.Fatal(err)
		}
		for i, o := range outs[1:] { // the KV cache, in the compute dtype
			if o.DType() != dt {
				t.Errorf("%s prefill: cache %d held in %s", dt, i, o.DType())
			}
		}
		for _, o := range outs {
			o.FinalizeAll()
		}
		n := 0
		for _, node := range g.Nodes() {
			if node.Type() == NodeTypeDotGeneral && node.DType() == dtypes.BFloat16 {
				n++
			}
		}
		if want := map[bool]int{true: 0, false: 9*m.Config.NumHiddenLayers + 1}[dt == dtypes.Float32]; n != want {
			t.Errorf("%s prefill graph: %d bf16 DotGenerals, want %d", dt, n, want)
		}
		return res
	}
	f32, bf16 := run(dtypes.Float32), run(dtypes.BFloat16)
	same, first := 0, 0
	for i := range reqs {
		t.Logf("prompt %v: f32 %v bf16 %v", reqs[i].Prompt, f32[i].Tokens, bf16[i].Tokens)
		if slices.Equal(f32[i].Tokens, bf16[i].Tokens) {
			same++
		}
		if f32[i].Tokens[0] == bf16[i].Tokens[0] {
			first++
		}
	}
	if first < len(reqs)-1 {
		t.Errorf("first greedy token agrees for %d/%d prompts, want >= %d", first, len(reqs), len(reqs)-1)
	}
	t.Logf("whole continuations equal for %d/%d prompts", same, len(reqs))
}
