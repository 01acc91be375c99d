package sft

import (
	"encoding/json"
	"io"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/gomlx/gomlx/backends"
	_ "github.com/gomlx/gomlx/backends/simplego"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"

	"github.com/statjob/statjob/train/backend"
	"github.com/statjob/statjob/train/model"
)

// The trainer's own tests use a tiny residual MLP language model written
// here (embedding, up/down projections with LoRA hooks, biased LM head) and
// its twin in testdata/tiny_ref.py; the Llama/Qwen2 model core is exercised
// in model_test.go.
const tinyVocab, tinyDim, tinyHidden = 32, 16, 24

// tinyBackend is the test backend: SimpleGo on the CPU unless GOMLX_BACKEND
// names another (the suite also runs on a GPU through XLA).
func tinyBackend(t testing.TB) backends.Backend {
	t.Helper()
	b, err := backend.New("")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type tinyWeights map[string]struct {
	Shape []int     `json:"shape"`
	Data  []float32 `json:"data"`
}

// newTinyContext fills a context with seeded weights; names follow HF style.
func newTinyContext(seed uint64) (*mlctx.Context, tinyWeights) {
	rng := rand.New(rand.NewPCG(seed, 7))
	w := tinyWeights{}
	ctx := mlctx.New()
	add := func(scope string, dims ...int) {
		n := 1
		for _, d := range dims {
			n *= d
		}
		data := make([]float32, n)
		for i := range data {
			data[i] = float32(rng.NormFloat64() * 0.3)
		}
		ctx.InAbsPath("/"+scope).VariableWithValue("weight", tensors.FromFlatDataAndDimensions(data, dims...))
		w[scope+".weight"] = struct {
			Shape []int     `json:"shape"`
			Data  []float32 `json:"data"`
		}{dims, data}
	}
	add("embed_tokens", tinyVocab, tinyDim)
	add("up_proj", tinyHidden, tinyDim)
	add("down_proj", tinyDim, tinyHidden)
	add("lm_head", tinyVocab, tinyDim)
	add("lm_head_bias", tinyVocab)
	return ctx, w
}

// tinyForward returns the summed, weighted cross-entropy of the tiny model.
// It registers the model core's DotGeneral gradient, as every CPU training
// run of the project does (and so a re-executed child computes the same).
func tinyForward(ad *Adapters) Forward {
	model.RegisterDotGeneralGradient()
	return func(ctx *mlctx.Context, b BatchNodes) *Node {
		g := b.Tokens.Graph()
		root := ctx.InAbsPath("/")
		w := func(scope string) *Node { return ctx.GetVariableByScopeAndName("/"+scope, "weight").ValueGraph(g) }
		proj := func(name string, x *Node) *Node {
			y := DotGeneral(x, []int{x.Rank() - 1}, nil, w(name), []int{1}, nil)
			return ad.Apply(root.In(name), name, x, y)
		}
		h := Gather(w("embed_tokens"), ExpandAxes(b.Tokens, -1)) // [B, S, D]
		h = Add(h, proj("down_proj", silu(proj("up_proj", h))))
		logits := Add(DotGeneral(h, []int{2}, nil, w("lm_head"), []int{1}, nil), Reshape(w("lm_head_bias"), 1, 1, tinyVocab))
		rows, seq := b.Tokens.Shape().Dim(0), b.Tokens.Shape().Dim(1)
		flat := Reshape(logits, rows*seq, tinyVocab)
		m := StopGradient(ReduceMax(flat, -1))
		lse := Add(Log(ReduceSum(Exp(Sub(flat, ExpandAxes(m, -1))), -1)), m)
		idx := Concatenate([]*Node{Iota(g, shapes.Make(dtypes.Int32, rows*seq, 1), 0), Reshape(b.Targets, rows*seq, 1)}, 1)
		picked := Gather(flat, idx)
		return ReduceAllSum(Mul(Sub(lse, picked), Reshape(b.Weights, rows*seq)))
	}
}

// randomDataset draws n examples of 4..maxLen tokens, the second half of
// each being "assistant" tokens.
func randomDataset(seed uint64, n, maxLen int) *Dataset {
	rng := rand.New(rand.NewPCG(seed, 11))
	d := &Dataset{}
	for range n {
		l := 4 + rng.IntN(maxLen-3)
		e := Example{IDs: make([]int32, l), Loss: make([]bool, l)}
		for i := range l {
			e.IDs[i] = int32(rng.IntN(tinyVocab))
			e.Loss[i] = i >= l/2
		}
		d.Examples = append(d.Examples, e)
	}
	return d
}

func tensorFloats(t testing.TB, v *mlctx.Variable) []float32 {
	t.Helper()
	val := v.MustValue()
	if val.DType() != dtypes.Float32 {
		t.Fatalf("%s: dtype %s", v.ScopeAndName(), val.DType())
	}
	return tensors.MustCopyFlatData[float32](val)
}

// mathRecord is a line of data/math/*.jsonl.
type mathRecord struct {
	Problem  string `json:"problem"`
	Solution string `json:"solution"`
}

func readMath(r io.Reader) ([]mathRecord, error) {
	var out []mathRecord
	dec := json.NewDecoder(r)
	for dec.More() {
		var m mathRecord
		if err := dec.Decode(&m); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func itoa(i int) string { return strconv.Itoa(i) }

func silu(x *Node) *Node { return Mul(x, Sigmoid(x)) }
