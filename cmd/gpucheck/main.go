// Command gpucheck checks and times statjob's student model on an
// accelerator: parity of tiny Llama / Qwen2 / Mistral / Gemma 3 models between the chosen
// backend, SimpleGo on the CPU and (when an interpreter with torch is
// given) the PyTorch reference, then a Qwen2-0.5B-shaped random model's SFT
// step tokens/s, KV-cached decode tokens/s (f32, bf16 weights, bf16 products)
// and answers of spread lengths batch after batch against continuous
// batching.
//
//	GOMLX_BACKEND=xla:/abs/path/xla_cuda_plugin.so,full-f32 gpucheck -bench=false
//	GOMLX_BACKEND=xla:/abs/path/xla_cuda_plugin.so gpucheck -parity=false
//
// Parity needs full float32 matrix products (the backend's full-f32 option);
// the timings are taken with XLA's defaults. bench/gpu/run.sh finds the
// plugin and CUDA directory and runs both.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/train/backend"
	"github.com/statjob/statjob/train/model"
)

var (
	flagBackend   = flag.String("backend", "", "backend spec (default $GOMLX_BACKEND)")
	flagPython    = flag.String("python", "", "python interpreter with torch for the PyTorch reference (optional)")
	flagReference = flag.String("reference", "reference.py", "path of train/model/testdata/reference.py")
	flagParity    = flag.Bool("parity", true, "check the tiny models' parity (on XLA, name the full-f32 backend option: TF32 products move logits by ~1e-2)")
	flagBench     = flag.Bool("bench", true, "time the Qwen2-0.5B-shaped model")
	flagBenchTiny = flag.Bool("bench-tiny", false, "time the tiny qwen2 model instead (a quick smoke test on a CPU)")
	flagTrainB    = flag.Int("train-batch", 4, "SFT step: sequences per step")
	flagTrainT    = flag.Int("train-seq", 512, "SFT step: tokens per sequence")
	flagSteps     = flag.Int("steps", 5, "SFT steps timed (after one compiling step)")
	flagDecodeB   = flag.Int("decode-batch", 16, "decode: sequences")
	flagPrompt    = flag.Int("prompt", 128, "decode: prompt tokens")
	flagNew       = flag.Int("new", 128, "decode: new tokens per sequence")
)

const tinyLlama = `{"model_type": "llama", "vocab_size": 96, "hidden_size": 64, "intermediate_size": 112,
	"num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
	"rope_theta": 500000.0, "max_position_embeddings": 131072, "tie_word_embeddings": false,
	"rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
	"original_max_position_embeddings": 8192}, "hidden_act": "silu"}`

const tinyQwen2 = `{"model_type": "qwen2", "vocab_size": 80, "hidden_size": 48, "intermediate_size": 96,
	"num_hidden_layers": 3, "num_attention_heads": 6, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
	"rope_theta": 1000000.0, "max_position_embeddings": 32768, "tie_word_embeddings": true, "hidden_act": "silu"}`

// tinyMistral's window (4) is shorter than the longest prompt plus the
// greedy steps, so the device's sliding-window mask is compared too.
const tinyMistral = `{"model_type": "mistral", "vocab_size": 72, "hidden_size": 32, "intermediate_size": 64,
	"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
	"rope_theta": 10000.0, "max_position_embeddings": 2048, "tie_word_embeddings": false,
	"sliding_window": 4, "hidden_act": "silu"}`

// tinyGemma3 has windowed layers (0, 1) with their own rope and a global
// one (2), Gemma's norms, GeGLU and scaled embedding.
const tinyGemma3 = `{"model_type": "gemma3_text", "vocab_size": 80, "hidden_size": 48, "intermediate_size": 96,
	"num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
	"rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
	"rope_scaling": {"rope_type": "linear", "factor": 8.0}, "query_pre_attn_scalar": 24,
	"sliding_window": 4, "sliding_window_pattern": 3, "max_position_embeddings": 32768,
	"tie_word_embeddings": true, "hidden_activation": "gelu_pytorch_tanh"}`

// tinyPhi4 is a Phi-4 mini: fused projections in its checkpoint, half of
// each head rotating, longrope's short factors and attention factor (the
// prompts and greedy steps stay within its original context).
const tinyPhi4 = `{"model_type": "phi3", "vocab_size": 80, "hidden_size": 64, "intermediate_size": 80,
	"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
	"rope_theta": 10000.0, "partial_rotary_factor": 0.5, "max_position_embeddings": 128,
	"original_max_position_embeddings": 32, "tie_word_embeddings": true,
	"rope_scaling": {"type": "longrope", "short_factor": [1.0, 1.5, 3.0, 7.0], "long_factor": [1.0, 2.0, 6.0, 20.0]},
	"hidden_act": "silu"}`

// qwen05B has Qwen2.5-0.5B's shapes.
const qwen05B = `{"model_type": "qwen2", "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864,
	"num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
	"rope_theta": 1000000.0, "max_position_embeddings": 32768, "tie_word_embeddings": true, "hidden_act": "silu"}`

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gpucheck:", err)
		os.Exit(1)
	}
}

func run() error {
	model.RegisterDotGeneralGradient()
	dev, err := backend.New(*flagBackend)
	if err != nil {
		return err
	}
	defer dev.Finalize()
	cpu, err := backend.New("go")
	if err != nil {
		return err
	}
	defer cpu.Finalize()
	fmt.Printf("backend: %s (%s)\n", backend.Resolve(*flagBackend), dev.Description())

	ok := true
	for _, tc := range []struct{ name, cfg string }{{"llama", tinyLlama}, {"qwen2", tinyQwen2}, {"mistral", tinyMistral}, {"gemma3", tinyGemma3}, {"phi4", tinyPhi4}} {
		if *flagParity {
			pass, err := parity(dev, cpu, tc.name, tc.cfg)
			if err != nil {
				return fmt.Errorf("parity %s: %w", tc.name, err)
			}
			ok = ok && pass
		}
	}
	if *flagBench {
		if err := bench(dev); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	if !ok {
		if !backend.HasOption(*flagBackend, "full-f32") {
			return fmt.Errorf("parity FAILED (without the backend's full-f32 option, XLA multiplies float32 matrices in TF32 on NVIDIA GPUs)")
		}
		return fmt.Errorf("parity FAILED")
	}
	fmt.Println("gpucheck: all checks passed")
	return nil
}

var prompts = [][]int{{5, 17, 33, 2, 9, 41, 60, 11, 7}, {12, 4}, {30, 31, 32, 33, 34}}

const greedySteps = 12

// parity compares logits (ragged batch) and greedy continuations of a tiny
// random model between dev, the CPU and optionally PyTorch.
func parity(dev, cpu backends.Backend, name, js string) (bool, error) {
	cfg, err := model.ParseConfig([]byte(js))
	if err != nil {
		return false, err
	}
	dir, err := os.MkdirTemp("", "gpucheck-"+name)
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(dir)
	store, err := storage.Open(context.Background(), dir)
	if err != nil {
		return false, err
	}
	defer store.Close()
	if err := model.NewRandom(cfg, 7, 0.15).Save(context.Background(), store, "", model.SaveOptions{}); err != nil {
		return false, err
	}
	results := map[string][][][]float32{}
	greedy := map[string][][]int{}
	for _, side := range []struct {
		name string
		b    backends.Backend
	}{{"device", dev}, {"cpu", cpu}} {
		m, err := model.Load(context.Background(), store, "")
		if err != nil {
			return false, err
		}
		if results[side.name], err = model.Logits(side.b, m, prompts); err != nil {
			return false, err
		}
		gen, err := model.NewGenerator(side.b, m)
		if err != nil {
			return false, err
		}
		var reqs []model.Request
		for _, p := range prompts {
			reqs = append(reqs, model.Request{Prompt: p})
		}
		res, err := gen.Generate(reqs, model.Sampling{MaxNewTokens: greedySteps})
		if err != nil {
			return false, err
		}
		for _, r := range res {
			greedy[side.name] = append(greedy[side.name], r.Tokens)
		}
	}
	pass := true
	d := maxDiff(results["device"], results["cpu"])
	same := slices.EqualFunc(greedy["device"], greedy["cpu"], slices.Equal[[]int])
	fmt.Printf("parity %-5s device vs CPU:     max |logit diff| %.2e (limit 1e-4), greedy identical: %v\n", name, d, same)
	pass = pass && d <= 1e-4

	if *flagPython != "" {
		ref, err := reference(dir)
		if err != nil {
			return false, err
		}
		d := maxDiff(results["device"], ref.Logits)
		compared, agree := 0, true
		for i := range prompts {
			for s, want := range ref.Greedy[i] {
				if ref.Margins[i][s] <= 1e-3 {
					break
				}
				compared++
				agree = agree && greedy["device"][i][s] == want
			}
		}
		fmt.Printf("parity %-5s device vs PyTorch: max |logit diff| %.2e (limit 1e-4), greedy identical on %d margin>1e-3 steps: %v\n", name, d, compared, agree)
		pass = pass && d <= 1e-4 && agree
	} else {
		fmt.Printf("parity %-5s device vs PyTorch: skipped (no -python with torch)\n", name)
	}
	return pass, nil
}

func maxDiff[T float32 | float64](a [][][]float32, b [][][]T) float64 {
	var d float64
	for i := range a {
		for j := range a[i] {
			for k := range a[i][j] {
				d = max(d, math.Abs(float64(a[i][j][k])-float64(b[i][j][k])))
			}
		}
	}
	return d
}

type refOutput struct {
	Logits  [][][]float64 `json:"logits"`
	Greedy  [][]int       `json:"greedy"`
	Margins [][]float64   `json:"margins"`
}

func reference(dir string) (*refOutput, error) {
	req, _ := json.Marshal(map[string]any{"prompts": prompts, "greedy_steps": greedySteps})
	reqPath, outPath := filepath.Join(dir, "request.json"), filepath.Join(dir, "reference.json")
	if err := os.WriteFile(reqPath, req, 0o644); err != nil {
		return nil, err
	}
	if out, err := exec.Command(*flagPython, *flagReference, dir, reqPath, outPath).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s %s: %v\n%s", *flagPython, *flagReference, err, out)
	}
	raw, err := os.ReadFile(outPath)
	if err != nil {
		return nil, err
	}
	ref := &refOutput{}
	return ref, json.Unmarshal(raw, ref)
}

// bench times the SFT step and decoding of a Qwen2-0.5B-shaped random model.
func bench(b backends.Backend) error {
	js, name := qwen05B, "Qwen2-0.5B-shaped"
	if *flagBenchTiny {
		js, name = tinyQwen2, "tiny qwen2"
	}
	cfg, err := model.ParseConfig([]byte(js))
	if err != nil {
		return err
	}
	start := time.Now()
	m := model.NewRandom(cfg, 1, 0.02)
	fmt.Printf("bench: %s random model built in %.1fs\n", name, time.Since(start).Seconds())

	bt, tt := *flagTrainB, *flagTrainT
	n := bt * tt
	tokens, targets, weights := make([]int32, n), make([]int32, n), make([]float32, n)
	for i := range tokens {
		tokens[i], targets[i], weights[i] = int32(i*7919%cfg.VocabSize), int32(i*104729%cfg.VocabSize), 1
	}
	e, err := mlctx.NewExec(b, m.Ctx, func(ctx *mlctx.Context, tok, tgt, w *Node) *Node {
		return model.SGDStep(ctx, cfg, tok, tgt, w, 1e-4)
	})
	if err != nil {
		return err
	}
	args := []any{tensors.FromFlatDataAndDimensions(tokens, bt, tt), tensors.FromFlatDataAndDimensions(targets, bt, tt),
		tensors.FromFlatDataAndDimensions(weights, bt, tt)}
	start = time.Now()
	loss, err := e.Exec1(args...)
	if err != nil {
		return err
	}
	first := tensors.ToScalar[float32](loss)
	fmt.Printf("bench: SFT step compiled and ran once in %.1fs (loss %.3f)\n", time.Since(start).Seconds(), first)
	start = time.Now()
	var last float32
	for range *flagSteps {
		loss, err := e.Exec1(args...)
		if err != nil {
			return err
		}
		last = tensors.ToScalar[float32](loss) // waits for the step
	}
	el := time.Since(start).Seconds()
	fmt.Printf("RESULT sft_step: batch %dx%d, %.3f s/step, %.0f tokens/s (full-weight SGD, f32; loss %.3f -> %.3f)\n",
		bt, tt, el/float64(*flagSteps), float64(n**flagSteps)/el, first, last)

	if err := timeDecode(b, m, "decode", dtypes.Float32); err != nil {
		return err
	}
	// The same weights held in bfloat16 (student.dtype: bfloat16).
	dir, err := os.MkdirTemp("", "gpucheck-bf16-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st, err := storage.Open(context.Background(), dir)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := m.Save(context.Background(), st, "", model.SaveOptions{DType: "BF16"}); err != nil {
		return err
	}
	held, err := model.LoadAs(context.Background(), st, "", dtypes.BFloat16)
	if err != nil {
		return err
	}
	if err := timeDecode(b, held, "decode_bf16_weights", dtypes.Float32); err != nil {
		return err
	}
	// probe.precision: bf16 — bf16 products and a bf16 KV cache.
	if err := timeDecode(b, held, "decode_bf16_compute", dtypes.BFloat16); err != nil {
		return err
	}
	return timeSpread(b, held, dtypes.BFloat16)
}

// timeSpread times answers of spread lengths (a stop token one time in 64,
// at most -new×2 tokens) for 4 × -decode-batch requests, -decode-batch at a
// time: batch after batch (one Generate per batch, which never refills) and
// with continuous batching (one Generate for all). Prints the answers'
// tokens/s of each.
func timeSpread(b backends.Backend, m *model.Model, dt dtypes.DType) error {
	cfg := m.Config
	var stop []int
	for tok := 7; tok < cfg.VocabSize; tok += 64 {
		stop = append(stop, tok)
	}
	s := model.Sampling{Temperature: 1, MaxNewTokens: 2 * *flagNew, StopTokens: stop}
	reqs := make([]model.Request, 4**flagDecodeB)
	for i := range reqs {
		p := make([]int, *flagPrompt)
		for j := range p {
			p[j] = (i*131 + j*17) % cfg.VocabSize
		}
		reqs[i] = model.Request{Prompt: p, Seed: uint64(i)}
	}
	gen, err := model.NewGenerator(b, m)
	if err != nil {
		return err
	}
	gen.MaxBatch, gen.ComputeDType = *flagDecodeB, dt
	if _, err := gen.Generate(reqs[:2**flagDecodeB], s); err != nil { // compiles prefill, refill and decode
		return err
	}
	for _, continuous := range []bool{false, true} {
		start, tokens := time.Now(), 0
		for from := 0; from < len(reqs); {
			to := len(reqs)
			if !continuous {
				to = from + *flagDecodeB
			}
			res, err := gen.Generate(reqs[from:to], s)
			if err != nil {
				return err
			}
			for _, r := range res {
				tokens += len(r.Tokens)
			}
			from = to
		}
		el := time.Since(start).Seconds()
		fmt.Printf("RESULT generate_%s: %d requests, %d slots, prompt %d, %.1f new tokens on average (cap %d), %s, %.0f answer tokens/s\n",
			map[bool]string{false: "static", true: "continuous"}[continuous], len(reqs), *flagDecodeB, *flagPrompt,
			float64(tokens)/float64(len(reqs)), s.MaxNewTokens, dt, float64(tokens)/el)
	}
	return nil
}

// timeDecode times greedy decoding of the flags' batch with m, matrix
// products in dt, after a compiling run, and prints a RESULT line named
// label.
func timeDecode(b backends.Backend, m *model.Model, label string, dt dtypes.DType) error {
	cfg := m.Config
	gen, err := model.NewGenerator(b, m)
	if err != nil {
		return err
	}
	gen.ComputeDType = dt
	reqs := make([]model.Request, *flagDecodeB)
	for i := range reqs {
		p := make([]int, *flagPrompt)
		for j := range p {
			p[j] = (i*131 + j*17) % cfg.VocabSize
		}
		reqs[i] = model.Request{Prompt: p, Seed: uint64(i)}
	}
	s := model.Sampling{MaxNewTokens: *flagNew}
	start := time.Now()
	if _, err := gen.Generate(reqs, s); err != nil { // compiles prefill and decode
		return err
	}
	fmt.Printf("bench: %s compiled and ran once in %.1fs\n", label, time.Since(start).Seconds())
	start = time.Now()
	res, err := gen.Generate(reqs, s)
	if err != nil {
		return err
	}
	el := time.Since(start).Seconds()
	total := 0
	for _, r := range res {
		total += len(r.Tokens)
	}
	fmt.Printf("RESULT %s: batch %d, prompt %d, %d new tokens each, greedy, %.1f ms/step, %.0f tokens/s (prefill included)\n",
		label, *flagDecodeB, *flagPrompt, *flagNew, el*1000/float64(*flagNew), float64(total)/el)
	return nil
}
