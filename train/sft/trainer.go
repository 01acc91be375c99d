package sft

import (
	"fmt"
	"path"
	"strings"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX's graph DSL reads best unqualified.
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"

	"github.com/statjob/statjob/train/model"
)

// BatchNodes is a micro-batch inside the graph, [rows, len] each.
type BatchNodes struct {
	Tokens, Targets, Positions, Segments *Node // int32
	Weights                              *Node // float32: 1 on loss tokens
	// Aux are the batch's extra per-token inputs, [rows, len] float32
	// each (Batch.Aux), for losses that need more than the targets (e.g.
	// GRPO's old log-probabilities and advantages).
	Aux []*Node
}

// Forward builds the loss of one micro-batch: the sum over tokens of
// Weights × cross-entropy(logits, Targets), a scalar. It must attend only
// within a segment (a block-diagonal causal mask, as model.ForwardSegments)
// and may use ctx.IsTraining(g) (e.g. for LoRA dropout). Variables it
// creates or reads live in ctx.
type Forward func(ctx *mlctx.Context, b BatchNodes) (lossSum *Node)

// StepStats is what one optimizer step measured.
type StepStats struct {
	Loss     float64 // mean loss per target token over the step's micro-batches
	GradNorm float64 // global gradient norm before clipping
	Targets  int     // loss tokens
	Tokens   int     // non-padding tokens
	// Stats are the sums over the step's micro-batches of what the
	// Forward reported with AddStats, in the order it added them.
	Stats []float64
}

const statsParam = "statjob_sft_stats"

// AddStats lets a Forward report extra scalar sums of its micro-batch
// (e.g. a count of clipped tokens) without changing the loss: the trainer
// adds them up over a step's micro-batches into StepStats.Stats. Call it in
// the Forward, with ctx and the graph it builds.
func AddStats(ctx *mlctx.Context, g *Graph, sums ...*Node) {
	var prev []*Node
	if v, ok := ctx.GetGraphParam(g, statsParam); ok {
		prev, _ = v.([]*Node)
	}
	ctx.SetGraphParam(g, statsParam, append(prev, sums...))
}

func graphStats(ctx *mlctx.Context, g *Graph) []*Node {
	if v, ok := ctx.GetGraphParam(g, statsParam); ok {
		s, _ := v.([]*Node)
		return s
	}
	return nil
}

// Trainer runs optimizer steps of a Forward on a backend. It owns the
// optimizer state (AdamW moments) as variables in the same context, under
// the scope "/sft".
type Trainer struct {
	cfg     Config
	backend backends.Backend
	ctx     *mlctx.Context
	forward Forward

	params   []*mlctx.Variable // trained variables, in context order
	decay    []bool
	acc      []*mlctx.Variable // summed gradients of the current step
	m1, m2   []*mlctx.Variable // AdamW moments
	micro    *mlctx.Exec
	apply    *mlctx.Exec
	eval     *mlctx.Exec
	step     int // optimizer steps done
	loraOnly bool
}

// loraVarPrefix marks adapter variables (see LoRA).
const loraVarPrefix = "lora_"

// isAdapter reports whether v is a LoRA adapter weight.
func isAdapter(v *mlctx.Variable) bool { return strings.HasPrefix(v.Name(), loraVarPrefix) }

// NewTrainer prepares training of forward's variables in ctx: all trainable
// ones for full fine-tuning, only the LoRA adapters when cfg.LoRA is enabled.
func NewTrainer(cfg Config, backend backends.Backend, ctx *mlctx.Context, forward Forward) (*Trainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Trainer{cfg: cfg, backend: backend, ctx: ctx, forward: forward, loraOnly: cfg.LoRA.Enabled()}
	if err := ctx.SetRNGStateFromSeed(cfg.Seed); err != nil { // dropout draws; checkpointed with the weights
		return nil, fmt.Errorf("sft: seed RNG: %w", err)
	}
	t.micro = mlctx.MustNewExec(backend, ctx, t.microGraph)
	t.eval = mlctx.MustNewExec(backend, ctx, t.evalGraph)
	return t, nil
}

func batchNodes(in []*Node) BatchNodes {
	return BatchNodes{Tokens: in[0], Targets: in[1], Positions: in[2], Segments: in[3], Weights: in[4], Aux: in[5:]}
}

func batchArgs(b *Batch) []any {
	args := []any{
		tensors.FromFlatDataAndDimensions(b.Tokens, b.Rows, b.Len),
		tensors.FromFlatDataAndDimensions(b.Targets, b.Rows, b.Len),
		tensors.FromFlatDataAndDimensions(b.Positions, b.Rows, b.Len),
		tensors.FromFlatDataAndDimensions(b.Segments, b.Rows, b.Len),
		tensors.FromFlatDataAndDimensions(b.Weights, b.Rows, b.Len),
	}
	for _, a := range b.Aux {
		args = append(args, tensors.FromFlatDataAndDimensions(a, b.Rows, b.Len))
	}
	return args
}

// microGraph adds one micro-batch's summed-loss gradients to the
// accumulators and returns the summed loss.
func (t *Trainer) microGraph(ctx *mlctx.Context, in []*Node) []*Node {
	g := in[0].Graph()
	ctx.SetTraining(g, true)
	loss := t.forward(ctx, batchNodes(in))
	if t.params == nil {
		t.selectParams(g)
	}
	values := make([]*Node, len(t.params))
	for i, v := range t.params {
		values[i] = v.ValueGraph(g)
	}
	grads := Gradient(loss, values...)
	for i, a := range t.acc {
		a.SetValueGraph(Add(a.ValueGraph(g), ConvertDType(grads[i], dtypes.Float32)))
	}
	out := []*Node{loss}
	for _, s := range graphStats(ctx, g) {
		out = append(out, ConvertDType(s, dtypes.Float32))
	}
	return out
}

func (t *Trainer) evalGraph(ctx *mlctx.Context, in []*Node) []*Node {
	g := in[0].Graph()
	ctx.SetTraining(g, false)
	loss := t.forward(ctx, batchNodes(in))
	if t.params == nil {
		t.selectParams(g)
	}
	return []*Node{loss}
}

// prepare creates the trained variables and the optimizer state (by building
// the evaluation graph for b, which updates no variable) so that a
// checkpoint can be loaded into them before the first step.
func (t *Trainer) prepare(b *Batch) error {
	if t.params != nil {
		return nil
	}
	if err := t.eval.PreCompile(batchArgs(b)...); err != nil {
		return fmt.Errorf("sft: build graph: %w", err)
	}
	if t.loraOnly { // a misspelt target would silently train fewer projections
		adapted := map[string]bool{}
		for _, v := range t.params {
			adapted[path.Base(v.Scope())] = true
		}
		for i, name := range t.cfg.LoRA.Targets {
			if !adapted[name] {
				hint := ""
				if parts := model.SplitModule(name); parts != nil {
					hint = fmt.Sprintf(" (a checkpoint fuses it; the model keeps its parts apart: name %s)", strings.Join(parts, ", "))
				}
				return fmt.Errorf("%w: sft.lora.targets[%d]: %q is no projection of the model%s", ErrConfig, i, name, hint)
			}
		}
	}
	if len(t.params) == 0 {
		return fmt.Errorf("sft: the model has no trainable variable")
	}
	return nil
}

// selectParams picks the trained variables once, from the first graph, and
// creates their accumulators and moments.
func (t *Trainer) selectParams(g *Graph) {
	for v := range t.ctx.IterVariables() {
		if !v.InUseByGraph(g) || !v.Trainable || strings.HasPrefix(v.Scope(), "/sft") {
			continue
		}
		if t.loraOnly != isAdapter(v) {
			continue
		}
		if dt := v.Shape().DType; dt != dtypes.Float32 {
			panic(fmt.Errorf("%w: %s is held in %s: trained weights need float32 (a model held in bfloat16 takes LoRA only)", ErrConfig, v.ScopeAndName(), dt))
		}
		t.params = append(t.params, v)
	}
	state := t.ctx.InAbsPath("/sft").Checked(false)
	for i, v := range t.params {
		t.decay = append(t.decay, t.cfg.decays(v.ScopeAndName()))
		zeros := func(kind string) *mlctx.Variable {
			s := v.Shape().Clone()
			s.DType = dtypes.Float32
			z := tensors.FromShape(s)
			return state.In(kind).VariableWithValue(fmt.Sprintf("%04d", i), z).SetTrainable(false)
		}
		t.acc = append(t.acc, zeros("acc"))
		t.m1 = append(t.m1, zeros("m1"))
		t.m2 = append(t.m2, zeros("m2"))
	}
}

// applyGraph clips the accumulated gradients, applies AdamW and zeroes the
// accumulators. Inputs: invTargets, decayFactor, stepSize, bc2Sqrt.
func (t *Trainer) applyGraph(ctx *mlctx.Context, in []*Node) []*Node {
	g := in[0].Graph()
	n := len(t.params)
	params, grads, m1, m2 := make([]*Node, n), make([]*Node, n), make([]*Node, n), make([]*Node, n)
	for i, v := range t.params {
		params[i] = v.ValueGraph(g)
		if params[i].DType() != dtypes.Float32 {
			params[i] = ConvertDType(params[i], dtypes.Float32)
		}
		grads[i] = t.acc[i].ValueGraph(g)
		m1[i], m2[i] = t.m1[i].ValueGraph(g), t.m2[i].ValueGraph(g)
	}
	newP, newM1, newM2, norm := clipAndAdamW(t.cfg, params, grads, m1, m2, t.decay, in[0], in[1], in[2], in[3])
	for i, v := range t.params {
		p := newP[i]
		if p.DType() != v.DType() {
			p = ConvertDType(p, v.DType())
		}
		v.SetValueGraph(p)
		t.m1[i].SetValueGraph(newM1[i])
		t.m2[i].SetValueGraph(newM2[i])
		t.acc[i].SetValueGraph(ZerosLike(grads[i]))
	}
	return []*Node{norm}
}

// Prepare creates the trained variables and the optimizer state from the
// shapes of b (a graph is built, nothing is trained), so that a checkpoint
// can be loaded into them before the first step.
func (t *Trainer) Prepare(b *Batch) error { return t.prepare(b) }

// Params returns the trained variables (known after the first step).
func (t *Trainer) Params() []*mlctx.Variable { return t.params }

// StepsDone is the number of optimizer steps taken.
func (t *Trainer) StepsDone() int { return t.step }

// SetStepsDone sets the optimizer steps taken (AdamW's bias correction
// counts them), for a loop whose checkpoints count other steps.
func (t *Trainer) SetStepsDone(n int) { t.step = n }

// Step runs one optimizer step over micro-batches at learning rate lr: the
// loss is the mean over all their target tokens (not a mean of per-batch
// means), so accumulation gives the same update as one large batch.
func (t *Trainer) Step(batches []*Batch, lr float64) (st StepStats, err error) {
	defer func() {
		if r := recover(); r != nil {
			if e, ok := r.(error); ok {
				err = fmt.Errorf("sft step %d: %w", t.step+1, e)
			} else {
				err = fmt.Errorf("sft step %d: %v", t.step+1, r)
			}
		}
	}()
	var lossSum float64
	for _, b := range batches {
		st.Targets += b.TargetCount()
		for _, s := range b.Segments {
			if s != 0 {
				st.Tokens++
			}
		}
		out, err := t.micro.Exec(batchArgs(b)...)
		if err != nil {
			return st, fmt.Errorf("sft step %d: forward/backward: %w", t.step+1, err)
		}
		lossSum += float64(tensors.ToScalar[float32](out[0]))
		if st.Stats == nil {
			st.Stats = make([]float64, len(out)-1)
		}
		for i, o := range out[1:] {
			st.Stats[i] += float64(tensors.ToScalar[float32](o))
		}
	}
	if st.Targets == 0 {
		return st, fmt.Errorf("sft step %d: %w: no target tokens in the step's batches", t.step+1, ErrData)
	}
	if t.apply == nil {
		t.apply = mlctx.MustNewExec(t.backend, t.ctx, t.applyGraph)
	}
	sc := newAdamScalars(t.cfg, lr, t.step+1, st.Targets)
	out, err := t.apply.Exec(float32(sc.invTargets), float32(sc.decayFactor), float32(sc.stepSize), float32(sc.bc2Sqrt))
	if err != nil {
		return st, fmt.Errorf("sft step %d: optimizer: %w", t.step+1, err)
	}
	t.step++
	st.Loss = lossSum / float64(st.Targets)
	st.GradNorm = float64(tensors.ToScalar[float32](out[0]))
	return st, nil
}

// Loss is the mean loss per target token over batches, without training
// (dropout off): the validation loss.
func (t *Trainer) Loss(batches []*Batch) (loss float64, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("sft validation loss: %v", r)
		}
	}()
	var sum float64
	var n int
	for _, b := range batches {
		out, err := t.eval.Exec(batchArgs(b)...)
		if err != nil {
			return 0, fmt.Errorf("sft validation loss: %w", err)
		}
		sum += float64(tensors.ToScalar[float32](out[0]))
		n += b.TargetCount()
	}
	if n == 0 {
		return 0, fmt.Errorf("sft validation loss: %w: no target tokens", ErrData)
	}
	return sum / float64(n), nil
}
