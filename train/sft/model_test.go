package sft

import (
	"context"
	"github.com/statjob/statjob/internal/torchref"
	"math"
	"os"
	"path/filepath"
	"testing"

	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"

	"github.com/statjob/statjob/train/model"
	"github.com/statjob/statjob/train/tokenizer"
)

// tinyStudentConfig is a Qwen2-shaped decoder (Q/K/V bias, GQA, tied
// embeddings) whose vocabulary holds testdata/tinytok.
const tinyStudentConfig = `{"model_type": "qwen2", "vocab_size": 288, "hidden_size": 32, "intermediate_size": 64,
	"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
	"rope_theta": 1000000.0, "max_position_embeddings": 4096, "tie_word_embeddings": true,
	"hidden_act": "silu", "eos_token_id": 284}`

// tinyGemma3Config is the tiny student as a Gemma 3 (four norms a layer
// scaling by 1 + weight, q/k norms, GeGLU, a scaled embedding, a windowed
// layer with its own rope and a global one), so that training is checked
// through Gemma's parts too.
const tinyGemma3Config = `{"model_type": "gemma3_text", "vocab_size": 288, "hidden_size": 32, "intermediate_size": 64,
	"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "rms_norm_eps": 1e-6,
	"rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "query_pre_attn_scalar": 8, "sliding_window": 16,
	"sliding_window_pattern": 2, "max_position_embeddings": 4096, "tie_word_embeddings": true,
	"hidden_activation": "gelu_pytorch_tanh", "eos_token_id": 284}`

// tinyPhi4Config is the tiny student as a Phi-4-mini: fused projections
// in its checkpoint, half of each head rotating, longrope switching to its
// long factors in rows past 112 tokens, and a sliding window.
const tinyPhi4Config = `{"model_type": "phi3", "vocab_size": 288, "hidden_size": 32, "intermediate_size": 64,
	"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
	"rope_theta": 10000.0, "partial_rotary_factor": 0.5, "max_position_embeddings": 256,
	"original_max_position_embeddings": 112, "sliding_window": 48, "tie_word_embeddings": true,
	"rope_scaling": {"type": "longrope", "short_factor": [1.0, 2.0], "long_factor": [1.5, 8.0]},
	"hidden_act": "silu", "eos_token_id": 284}`

// tinyStudent writes a random tiny student (with the tiny tokenizer's
// files) to a fresh directory and loads it back.
func tinyStudent(t testing.TB) (*model.Model, string) {
	t.Helper()
	return tinyStudentOf(t, tinyStudentConfig)
}

// tinyStudentOf is tinyStudent with the given config.json.
func tinyStudentOf(t testing.TB, config string) (*model.Model, string) {
	t.Helper()
	cfg, err := model.ParseConfig([]byte(config))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	store := openStore(t, dir)
	if err := model.NewRandom(cfg, 5, 0.08).Save(context.Background(), store, "", model.SaveOptions{Files: tokenizerFiles(t)}); err != nil {
		t.Fatal(err)
	}
	m, err := model.Load(context.Background(), store, "")
	if err != nil {
		t.Fatal(err)
	}
	return m, dir
}

// studentTrainer returns a trainer of a fresh tiny student under cfg, the
// student and the directory it was saved in.
func studentTrainer(t testing.TB, cfg Config) (*Trainer, *model.Model, string) {
	t.Helper()
	m, dir := tinyStudent(t)
	return modelTrainer(t, m, cfg), m, dir
}

// modelTrainer returns a trainer of m under cfg.
func modelTrainer(t testing.TB, m *model.Model, cfg Config) *Trainer {
	t.Helper()
	fwd, err := ModelForward(m.Config, cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewTrainer(cfg, tinyBackend(t), m.Ctx, fwd)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func tokenizerFiles(t testing.TB) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		b, err := os.ReadFile(filepath.Join("testdata/tinytok", f))
		if err != nil {
			t.Fatal(err)
		}
		files[f] = b
	}
	return files
}

// mathDataset renders short MATH train problems (prompt = problem,
// completion = solution) through the tiny tokenizer's chat template.
func mathDataset(t testing.TB, n int, cfg Config) *Dataset {
	t.Helper()
	f, err := os.Open("../../data/math/train.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var convs []Conversation
	recs, err := readMath(f)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		if len(r.Problem)+len(r.Solution) < 200 && len(convs) < n {
			convs = append(convs, Conversation{Source: "math/train.jsonl:" + itoa(i+1), Messages: []tokenizer.Message{
				{Role: "user", Content: r.Problem}, {Role: "assistant", Content: r.Solution}}})
		}
	}
	d, err := Tokenize(convs, tinyTokenizer(t), tokenizer.ChatOptions{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// modelSteps lays out steps optimizer steps from as many epochs as needed.
func modelSteps(d *Dataset, cfg Config, steps int) [][]*Batch {
	var out [][]*Batch
	for e := 0; len(out) < steps; e++ {
		out = append(out, groupSteps(d.EpochBatches(cfg, e), cfg.Accumulation, steps-len(out))...)
	}
	return out
}

// TestModelTrainingMatchesTorch fine-tunes the tiny Qwen2 student on MATH
// conversations for 20 optimizer steps (accumulation 2, warm-up, cosine,
// clipping, weight decay), fully and with LoRA on all seven projections
// (and the tiny Gemma 3 and Phi-4-mini fully), and compares with the PyTorch reference
// forward trained by torch.optim.AdamW.
// The LoRA run then exports a merged HF directory, checked against
// base + (α/r)·B·A and, for logits, against the PyTorch reference.
func TestModelTrainingMatchesTorch(t *testing.T) {
	torchref.Python(t)
	for _, tc := range []struct {
		name, config string
		lora         bool
	}{{"full", tinyStudentConfig, false}, {"lora", tinyStudentConfig, true}, {"gemma3 full", tinyGemma3Config, false},
		{"phi4 full", tinyPhi4Config, false}} {
		name, lora := tc.name, tc.lora
		t.Run(name, func(t *testing.T) {
			const steps = 20
			cfg := DefaultConfig()
			cfg.MaxLen, cfg.MicroBatch, cfg.Accumulation = 128, 2, 2
			cfg.LR, cfg.ClipNorm = 3e-3, 1.0
			if lora {
				cfg.LR, cfg.ClipNorm = 1e-2, 0.3
				cfg.LoRA.Dropout = 0
			} else {
				cfg.LoRA = LoRAConfig{}
			}
			m, dir := tinyStudentOf(t, tc.config)
			tr := modelTrainer(t, m, cfg)
			base := map[string][]float32{}
			for v := range m.Ctx.IterVariables() {
				if v.Name() != mlctx.RNGStateVariableName {
					base[torchName(v.ScopeAndName())] = tensorFloats(t, v)
				}
			}
			plan := modelSteps(mathDataset(t, 40, cfg), cfg, steps)
			if m.Config.LongRope() {
				rows := map[bool]int{} // rows that rotate with the long factors, and with the short ones
				for _, st := range plan {
					for _, b := range st {
						for r := range b.Rows {
							rows[realTokens(b, r) > m.Config.LongRopeFrom()]++
						}
					}
				}
				if rows[true] == 0 || rows[false] == 0 {
					t.Fatalf("%d rows past longrope's original context %d and %d within it, want some of each", rows[true], m.Config.LongRopeFrom(), rows[false])
				}
				t.Logf("%d rows past the original context, %d within it", rows[true], rows[false])
			}
			warm := WarmupSteps(0.1, steps)
			loraA := map[string]any{}
			var goLoss, goNorm []float64
			var after2 map[string][]float32
			for i, st := range plan {
				s, err := tr.Step(st, LearningRate(cfg.LR, i, warm, steps))
				if err != nil {
					t.Fatal(err)
				}
				if i == 0 && lora {
					// A is untouched by a step at lr 0 (B = 0 gives A no gradient anyway).
					for v := range m.Ctx.IterVariables() {
						if v.Name() == LoRAAName {
							val := v.MustValue()
							loraA[torchName(v.Scope())] = map[string]any{"shape": val.Shape().Dimensions, "data": tensors.MustCopyFlatData[float32](val)}
						}
					}
				}
				goLoss, goNorm = append(goLoss, s.Loss), append(goNorm, s.GradNorm)
				if i == 1 {
					after2 = map[string][]float32{}
					for _, v := range tr.Params() {
						after2[torchName(v.ScopeAndName())] = tensorFloats(t, v)
					}
				}
			}
			if lora && len(loraA) != 2*7 {
				t.Fatalf("%d adapters, want 14 (2 layers × 7 projections)", len(loraA))
			}
			var ref refOut
			torchref.RunScript(t, "testdata/sft_ref.py", dir, refInput(cfg, warm, plan, loraA), &ref)
			for i := range goLoss {
				if rel := math.Abs(goLoss[i]-ref.Losses[i]) / ref.Losses[i]; rel > 1e-4 {
					t.Errorf("step %d loss: go %.7g torch %.7g", i+1, goLoss[i], ref.Losses[i])
				}
				if rel := math.Abs(goNorm[i]-ref.GradNorms[i]) / ref.GradNorms[i]; rel > 1e-3 {
					t.Errorf("step %d grad norm: go %.7g torch %.7g", i+1, goNorm[i], ref.GradNorms[i])
				}
			}
			final := map[string][]float32{}
			for _, v := range tr.Params() {
				final[torchName(v.ScopeAndName())] = tensorFloats(t, v)
			}
			d2, dN := maxAbsDiff(t, after2, ref.AfterFirst), maxAbsDiff(t, final, ref.Final)
			if d2 > 1e-5 || dN > 2e-4 {
				t.Errorf("weights differ from torch: after step 2 by %.3g, after step %d by %.3g", d2, steps, dN)
			}
			if goLoss[steps-1] >= goLoss[0] {
				t.Errorf("loss did not go down: %.4f → %.4f", goLoss[0], goLoss[steps-1])
			}
			t.Logf("%s: loss %.5f → %.5f (torch %.5f → %.5f), max |Δw| vs torch: step 2 %.2g, step %d %.2g",
				name, goLoss[0], goLoss[steps-1], ref.Losses[0], ref.Losses[steps-1], d2, steps, dN)
			if lora {
				checkLoRAExport(t, m, cfg, base)
			}
		})
	}
}

func maxAbsDiff(t testing.TB, got map[string][]float32, want map[string][]float64) float64 {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d tensors trained in Go, %d in torch", len(got), len(want))
	}
	worst := 0.0
	for k, w := range want {
		g, ok := got[k]
		if !ok || len(g) != len(w) {
			t.Fatalf("tensor %s: missing or mis-sized in Go", k)
		}
		for i := range w {
			worst = max(worst, math.Abs(float64(g[i])-w[i]))
		}
	}
	return worst
}

// checkLoRAExport exports the LoRA-trained student and checks the merge and
// the logits of the exported directory in Go and in PyTorch.
func checkLoRAExport(t *testing.T, m *model.Model, cfg Config, base map[string][]float32) {
	t.Helper()
	// Expected merged weights, computed here in float64.
	want := map[string][]float64{}
	for v := range m.Ctx.IterVariables() {
		name := torchName(v.ScopeAndName())
		if w, ok := base[name]; ok && v.Name() != "weight" {
			if got := tensorFloats(t, v); string(f32bytes(got)) != string(f32bytes(w)) {
				t.Errorf("LoRA training changed %s", name)
			}
		}
		if v.Name() != "weight" {
			continue
		}
		w := base[name]
		exp := make([]float64, len(w))
		for i := range w {
			exp[i] = float64(w[i])
		}
		if av := m.Ctx.GetVariableByScopeAndName(v.Scope(), LoRAAName); av != nil {
			A := tensorFloats(t, av)
			B := tensorFloats(t, m.Ctx.GetVariableByScopeAndName(v.Scope(), LoRABName))
			r, in := cfg.LoRA.Rank, len(A)/cfg.LoRA.Rank
			out := len(w) / in
			for o := range out {
				for k := range in {
					s := 0.0
					for j := range r {
						s += float64(B[o*r+j]) * float64(A[j*in+k])
					}
					exp[o*in+k] += cfg.LoRA.Scale() * s
				}
			}
		} else if got := tensorFloats(t, v); string(f32bytes(got)) != string(f32bytes(w)) {
			t.Errorf("LoRA training changed non-adapted weight %s", name)
		}
		want[name] = exp
	}
	out := t.TempDir()
	store := openStore(t, out)
	backend := tinyBackend(t)
	if err := Export(context.Background(), m, cfg, store, "student", "F32", tokenizerFiles(t)); err != nil {
		t.Fatal(err)
	}
	loaded, err := model.Load(context.Background(), store, "student")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]float32{}
	for v := range loaded.Ctx.IterVariables() {
		if v.Name() == "weight" {
			got[torchName(v.ScopeAndName())] = tensorFloats(t, v)
		}
	}
	if d := maxAbsDiff(t, got, want); d > 1e-6 {
		t.Errorf("exported weights differ from base + (α/r)·B·A by %.3g", d)
	}
	tok, err := tokenizer.LoadDir(filepath.Join(out, "student"))
	if err != nil || tok.TemplateHash() != tinyTokenizer(t).TemplateHash() {
		t.Errorf("exported tokenizer: %v", err)
	}
	// Logits of the exported student: Go (model core) vs PyTorch reference.
	prompt := []int32{257, 8, 70, 71, 72, 12, 33, 90, 258, 13}
	pos := make([]int32, len(prompt))
	valid := make([]bool, len(prompt))
	for i := range pos {
		pos[i], valid[i] = int32(i), true
	}
	logits := mlctx.MustExecOnce(backend, loaded.Ctx, func(ctx *mlctx.Context, tokens, positions, valid *Node) *Node {
		return model.Forward(ctx, loaded.Config, tokens, positions, valid)
	}, tensors.FromFlatDataAndDimensions(prompt, 1, len(prompt)), tensors.FromFlatDataAndDimensions(pos, 1, len(pos)),
		tensors.FromFlatDataAndDimensions(valid, 1, len(valid)))
	goLogits := tensors.MustCopyFlatData[float32](logits)
	var ref struct {
		Logits [][][]float64 `json:"logits"`
	}
	ids := make([]int, len(prompt))
	for i, p := range prompt {
		ids[i] = int(p)
	}
	torchref.RunScript(t, "../model/testdata/reference.py", filepath.Join(out, "student"), map[string]any{"prompts": [][]int{ids}, "greedy_steps": 0}, &ref)
	worst := 0.0
	for i, row := range ref.Logits[0] {
		for j, w := range row {
			worst = max(worst, math.Abs(float64(goLogits[i*len(row)+j])-w))
		}
	}
	if worst > 1e-4 {
		t.Errorf("exported student: Go and PyTorch logits differ by %.3g", worst)
	}
	t.Logf("export: merged weights match base + (α/r)·B·A; Go vs PyTorch logits max |Δ| %.2g", worst)
}

func f32bytes(f []float32) []byte {
	out := make([]byte, 0, 4*len(f))
	for _, x := range f {
		u := math.Float32bits(x)
		out = append(out, byte(u), byte(u>>8), byte(u>>16), byte(u>>24))
	}
	return out
}

// TestPackedLossEqualsUnpacked: the student's loss over MATH conversations
// packed several to a row equals their loss one per row, so packed examples
// do not attend to each other.
func TestPackedLossEqualsUnpacked(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxLen, cfg.MicroBatch, cfg.LoRA = 512, 2, LoRAConfig{}
	tr, _, _ := studentTrainer(t, cfg)
	d := mathDataset(t, 8, cfg)
	single, err := tr.Loss(d.EpochBatches(cfg, 0))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Packing = true
	packedBatches := d.EpochBatches(cfg, 0)
	multi := false
	for _, b := range packedBatches {
		for _, s := range b.Segments {
			multi = multi || s > 1
		}
	}
	if !multi {
		t.Fatal("no row holds two examples")
	}
	packed, err := tr.Loss(packedBatches)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(packed-single) > 1e-5*single {
		t.Errorf("packed loss %.7f, one example per row %.7f", packed, single)
	}
}

// realTokens counts row r's tokens that are not padding.
func realTokens(b *Batch, r int) int {
	n := 0
	for _, s := range b.Segments[r*b.Len : (r+1)*b.Len] {
		if s != 0 {
			n++
		}
	}
	return n
}
