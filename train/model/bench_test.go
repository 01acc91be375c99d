package model

import (
	"context"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
)

// benchConfig is the model bench/model/run.sh compares with PyTorch.
const benchConfig = `{"model_type": "llama", "vocab_size": 2048, "hidden_size": 256, "intermediate_size": 704,
	"num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
	"rope_theta": 500000.0, "max_position_embeddings": 4096, "tie_word_embeddings": false, "hidden_act": "silu"}`

const (
	benchBatch     = 4
	benchSeq       = 128 // training tokens per sequence
	benchPrompt    = 64  // decode: prompt length
	benchNewTokens = 64  // decode: cache holds prompt + new tokens
)

// benchModel builds the random bench model; with STATJOB_BENCH_CHECKPOINT
// set it also writes it there for the PyTorch side.
func benchModel(b *testing.B) *Model {
	m := NewRandom(mustConfig(b, benchConfig), 11, 0.05)
	if dir := os.Getenv("STATJOB_BENCH_CHECKPOINT"); dir != "" {
		if err := m.Save(context.Background(), openDir(b, dir), "", SaveOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	return m
}

// BenchmarkTrainStep: forward + backward + SGD update, tokens/s.
func BenchmarkTrainStep(b *testing.B) {
	RegisterDotGeneralGradient()
	be := testBackend(b)
	m := benchModel(b)
	n := benchBatch * benchSeq
	tokens, targets, weights := make([]int32, n), make([]int32, n), make([]float32, n)
	for i := range tokens {
		tokens[i], targets[i], weights[i] = int32(i*31%m.Config.VocabSize), int32(i*17%m.Config.VocabSize), 1
	}
	exec := mlctx.MustNewExec(be, m.Ctx, func(ctx *mlctx.Context, tok, tgt, w *Node) *Node {
		return SGDStep(ctx, m.Config, tok, tgt, w, 1e-3)
	})
	args := []any{tensors.FromFlatDataAndDimensions(tokens, benchBatch, benchSeq),
		tensors.FromFlatDataAndDimensions(targets, benchBatch, benchSeq), tensors.FromFlatDataAndDimensions(weights, benchBatch, benchSeq)}
	exec.MustExec(args...) // compile
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		exec.MustExec(args...)[0].FinalizeAll()
	}
	b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "tokens/s")
}

// BenchmarkDecodeStep: one KV-cached decode step for the whole batch, ms/step.
func BenchmarkDecodeStep(b *testing.B) {
	b.Run("weights=float32", func(b *testing.B) { benchDecode(b, benchModel(b)) })
	b.Run("weights=bfloat16", func(b *testing.B) {
		dir := b.TempDir()
		if err := benchModel(b).Save(context.Background(), openDir(b, dir), "", SaveOptions{DType: "BF16"}); err != nil {
			b.Fatal(err)
		}
		m, err := LoadAs(context.Background(), openDir(b, dir), "", dtypes.BFloat16)
		if err != nil {
			b.Fatal(err)
		}
		benchDecode(b, m)
	})
}

// benchDecode times one decode step of m (the bench model's shape) over a
// cache of benchPrompt + benchNewTokens.
func benchDecode(b *testing.B, m *Model) {
	be := testBackend(b)
	gen, err := NewGenerator(be, m)
	if err != nil {
		b.Fatal(err)
	}
	prompts := make([]int32, benchBatch*benchPrompt)
	lengths := make([]int32, benchBatch)
	for i := range prompts {
		prompts[i] = int32(i * 7 % m.Config.VocabSize)
	}
	for i := range lengths {
		lengths[i] = benchPrompt
	}
	cacheLen := benchPrompt + benchNewTokens
	outs := gen.prefill.MustExec(tensors.FromFlatDataAndDimensions(prompts, benchBatch, benchPrompt),
		tensors.FromFlatDataAndDimensions(lengths, benchBatch), tensors.FromShape(shapes.Make(dtypes.Int8, cacheLen)))
	step := func(pos int32) {
		next := make([]int32, benchBatch)
		ps := []int32{pos, pos, pos, pos}
		args := []any{tensors.FromFlatDataAndDimensions(next, benchBatch), tensors.FromFlatDataAndDimensions(ps, benchBatch)}
		for _, c := range outs[1:] {
			args = append(args, c)
		}
		outs = gen.decode.MustExec(args...)
		tensors.MustCopyFlatData[float32](outs[0]) // the host reads the logits every step
	}
	step(benchPrompt) // compile
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		step(int32(benchPrompt + 1 + i%(benchNewTokens-1)))
	}
	b.ReportMetric(float64(time.Since(start).Milliseconds())/float64(b.N), "ms/step")
}

// BenchmarkCrossEntropyMemory measures the peak Go heap of the loss and its
// gradient at Qwen's 151,936-token vocabulary for the gather-based loss and,
// for contrast, a one-hot formulation, next to the size of the logits.
func BenchmarkCrossEntropyMemory(b *testing.B) {
	const B, T, V = 2, 128, 151936
	losses := map[string]func(l, tg, w *Node) *Node{
		"gather": CrossEntropy,
		"onehot": func(l, tg, w *Node) *Node {
			picked := ReduceSum(Mul(OneHot(tg, V, dtypes.Float32), LogSoftmax(l, -1)), -1)
			return Div(Neg(ReduceAllSum(Mul(picked, w))), ReduceAllSum(w))
		},
	}
	for _, name := range []string{"gather", "onehot"} {
		b.Run(name, func(b *testing.B) {
			be := testBackend(b)
			logits := tensors.FromShape(shapes.Make(dtypes.Float32, B, T, V))
			targets := tensors.FromShape(shapes.Make(dtypes.Int32, B, T))
			weights := tensors.FromScalarAndDimensions(float32(1), B, T)
			exec := MustNewExec(be, func(l, tg, w *Node) []*Node {
				loss := losses[name](l, tg, w)
				return append([]*Node{loss}, Gradient(loss, l)...)
			})
			exec.MustExec(logits, targets, weights) // compile
			runtime.GC()
			var base runtime.MemStats
			runtime.ReadMemStats(&base)
			var peak atomic.Uint64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				var ms runtime.MemStats
				for {
					select {
					case <-stop:
						return
					case <-time.After(time.Millisecond):
						runtime.ReadMemStats(&ms)
						if ms.HeapInuse > peak.Load() {
							peak.Store(ms.HeapInuse)
						}
					}
				}
			})
			b.ResetTimer()
			for range b.N {
				for _, t := range exec.MustExec(logits, targets, weights) {
					t.FinalizeAll()
				}
			}
			close(stop)
			wg.Wait()
			b.ReportMetric(float64(peak.Load()-min(peak.Load(), base.HeapInuse))/(1<<20), "peak-MB-over-inputs")
			b.ReportMetric(float64(B*T*V*4)/(1<<20), "logits-MB")
		})
	}
}

// BenchmarkGenerateBatching: 96 answers of spread lengths (a stop token
// one time in 32, at most 128 new tokens: many short, a few at the cap, as
// real answers are) from the bench model, 16 at a time, batch after batch
// (static) and continuously. Reports the answers' tokens per second and the
// decode steps each took.
func BenchmarkGenerateBatching(b *testing.B) {
	be := testBackend(b)
	m := benchModel(b)
	var stop []int
	for tok := 5; tok < m.Config.VocabSize; tok += 32 {
		stop = append(stop, tok)
	}
	s := Sampling{Temperature: 1, MaxNewTokens: 128, StopTokens: stop}
	reqs := benchRequests(96, m.Config.VocabSize)
	for _, static := range []bool{true, false} {
		name := map[bool]string{true: "static", false: "continuous"}[static]
		b.Run(name, func(b *testing.B) {
			gen, err := NewGenerator(be, m)
			if err != nil {
				b.Fatal(err)
			}
			gen.MaxBatch, gen.static = 16, static
			if _, err := gen.Generate(reqs[:16], s); err != nil { // compiles
				b.Fatal(err)
			}
			tokens := timeGenerate(b, gen, reqs, s)
			b.ReportMetric(float64(gen.stats.steps), "steps")
			b.ReportMetric(float64(tokens)/float64(b.N*len(reqs)), "tokens/answer")
		})
	}
}

// BenchmarkRingCache: long answers (960 new tokens after a 64-token
// prompt, a 1,024-token cache) from the bench model made a Mistral, 8 at a
// time, greedy, with a 128-token sliding window (a ring of 128 slots per
// layer) and with none (the whole 1,024). The two attend differently, so
// the answers differ; what is compared is the cost of a decode step and
// the cache each holds.
func BenchmarkRingCache(b *testing.B) {
	be := testBackend(b)
	for _, window := range []string{"128", "null"} {
		b.Run("window="+window, func(b *testing.B) {
			js := strings.Replace(benchConfig, `"llama"`, `"mistral"`, 1)
			js = strings.Replace(js, `"hidden_act"`, `"sliding_window": `+window+`, "hidden_act"`, 1)
			m := NewRandom(mustConfig(b, js), 11, 0.05)
			gen, err := NewGenerator(be, m)
			if err != nil {
				b.Fatal(err)
			}
			gen.MaxBatch = 8
			s := Sampling{MaxNewTokens: 960}
			reqs := benchRequests(8, m.Config.VocabSize)
			if _, err := gen.Generate(reqs, Sampling{MaxNewTokens: 960 - 64}); err != nil { // compiles (same cache length)
				b.Fatal(err)
			}
			timeGenerate(b, gen, reqs, s)
			c := m.Config
			var slots int
			for i := range c.NumHiddenLayers {
				slots += c.CacheLen(i, 1024)
			}
			b.ReportMetric(float64(len(reqs)*slots*2*c.NumKeyValueHeads*c.HeadDim*4)/(1<<20), "cache-MiB")
		})
	}
}

// benchRequests makes n requests of benchPrompt tokens (request i seeded i).
func benchRequests(n, vocab int) []Request {
	reqs := make([]Request, n)
	for i := range reqs {
		p := make([]int, benchPrompt)
		for j := range p {
			p[j] = (i*131 + j*17) % vocab
		}
		reqs[i] = Request{Prompt: p, Seed: uint64(i)}
	}
	return reqs
}

// timeGenerate answers reqs b.N times, reports the answers' tokens/s and
// returns how many tokens they had.
func timeGenerate(b *testing.B, gen *Generator, reqs []Request, s Sampling) int {
	b.ResetTimer()
	start, tokens := time.Now(), 0
	for range b.N {
		res, err := gen.Generate(reqs, s)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range res {
			tokens += len(r.Tokens)
		}
	}
	b.ReportMetric(float64(tokens)/time.Since(start).Seconds(), "tokens/s")
	return tokens
}
