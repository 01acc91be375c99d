package sft

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"path"
	"slices"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX's graph DSL reads best unqualified.
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"

	"github.com/statjob/statjob/train/model"
)

// Adapter variable names, inside the projection's scope.
const (
	LoRAAName = loraVarPrefix + "A" // [rank, in]
	LoRABName = loraVarPrefix + "B" // [out, rank]
)

// Adapters adds LoRA to linear projections: Apply is the model core's
// adapter hook (model.UseAdapter), called from the one function all its
// projections go through.
type Adapters struct {
	cfg  LoRAConfig
	seed int64
}

// NewAdapters returns the adapters of cfg.LoRA (none when its rank is 0),
// initialised from cfg.Seed.
func NewAdapters(cfg Config) *Adapters { return &Adapters{cfg: cfg.LoRA, seed: cfg.Seed} }

// Apply returns y + (α/r)·dropout(x)·Aᵀ·Bᵀ when module (e.g. "q_proj") is a
// target, else y. y = x·Wᵀ (+ bias) is the base projection of x [..., in]
// into [..., out]; ctx is scoped at the projection, where lora_A [r, in] and
// lora_B [out, r] live, both float32 master weights; the two products run in
// the graph's compute dtype (model.ComputeDot), like the projection they
// adapt. A starts as PEFT's kaiming-uniform, B as zeros, so the adapted
// model starts equal to the base. Dropout applies only when training.
func (a *Adapters) Apply(ctx *mlctx.Context, module string, x, y *Node) *Node {
	if a == nil || !a.cfg.Enabled() || !slices.Contains(a.cfg.Targets, module) {
		return y
	}
	g := x.Graph()
	A, B := a.vars(ctx, x.Shape().Dim(-1), y.Shape().Dim(-1), g)
	h := x
	if p := a.cfg.Dropout; p > 0 && ctx.IsTraining(g) {
		keep := GreaterOrEqual(ctx.RandomUniform(g, x.Shape()), Scalar(g, x.DType(), p))
		h = Where(keep, MulScalar(x, 1/(1-p)), ZerosLike(x))
	}
	lead := x.Rank() - 1
	h = model.ComputeDot(ctx, h, []int{lead}, nil, A, []int{1}, nil) // [..., r]
	h = model.ComputeDot(ctx, h, []int{lead}, nil, B, []int{1}, nil) // [..., out]
	return Add(y, MulScalar(h, a.cfg.Scale()))
}

// vars returns the adapter of the projection at ctx's scope, creating it
// when absent.
func (a *Adapters) vars(ctx *mlctx.Context, in, out int, g *Graph) (A, B *Node) {
	ctx = ctx.Checked(false)
	av := ctx.VariableWithValue(LoRAAName, a.initA(ctx.Scope(), a.cfg.Rank, in))
	bv := ctx.VariableWithValue(LoRABName, tensors.FromShape(shapes.Make(dtypes.Float32, out, a.cfg.Rank)))
	return av.ValueGraph(g), bv.ValueGraph(g)
}

// targets lists the weight variables of the decoder projections that carry
// adapters: "weight" in a scope /model/layers/<i>/.../<target>.
func (a *Adapters) targets(ctx *mlctx.Context) []*mlctx.Variable {
	if a == nil || !a.cfg.Enabled() {
		return nil
	}
	var out []*mlctx.Variable
	for v := range ctx.IterVariables() {
		if v.Name() == "weight" && strings.HasPrefix(v.Scope(), "/model/layers/") &&
			slices.Contains(a.cfg.Targets, path.Base(v.Scope())) {
			out = append(out, v)
		}
	}
	return out
}

// initA draws A ~ U(-1/√in, 1/√in) (kaiming-uniform with a=√5, as PEFT) from
// a generator seeded by the run seed and the projection's scope, so every
// adapter's start is reproducible and independent of creation order.
func (a *Adapters) initA(scope string, r, in int) *tensors.Tensor {
	h := fnv.New64a()
	h.Write([]byte(scope))
	rng := rand.New(rand.NewPCG(uint64(a.seed), h.Sum64()))
	bound := 1 / math.Sqrt(float64(in))
	data := make([]float32, r*in)
	for i := range data {
		data[i] = float32((2*rng.Float64() - 1) * bound)
	}
	return tensors.FromFlatDataAndDimensions(data, r, in)
}
