package grpo

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX's graph DSL reads best unqualified.
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"

	"github.com/statjob/statjob/train/model"
	"github.com/statjob/statjob/train/sft"
)

// Question is one training question: its chat prompt, tokenized with the
// generation prompt, and what the reward needs to grade an answer.
type Question struct {
	ID     string
	Prompt []int
	Answer string // gold answer, for the reward
}

// Reward scores one rollout of q: 1 for a correct answer, 0 otherwise in the
// pipeline, though any real number works. It must be deterministic.
type Reward func(q Question, rollout model.Result) float64

// advantageEps is added to a group's standard deviation (TRL's value).
const advantageEps = 1e-4

// Auxiliary inputs of a training batch (sft.Batch.Aux).
const (
	auxOldLogProb = iota // log-probability of the target under the policy that sampled it
	auxAdvantage         // the rollout's advantage, on its completion tokens
	auxRefLogProb        // log-probability of the target under the reference policy (KL term only)
)

// Trainer runs GRPO steps on a model: rollouts through the KV-cached
// sampler, updates through an sft.Trainer whose loss is the clipped
// surrogate.
type Trainer struct {
	cfg     Config
	model   *model.Model
	backend backends.Backend
	sft     *sft.Trainer
	gen     *model.Generator
	logp    *mlctx.Exec // old log-probabilities: the policy, no dropout
	ref     *mlctx.Exec // reference log-probabilities; nil without a KL term
	adapter model.Adapter
	dtype   dtypes.DType
	stop    []int
	updates int // optimizer steps taken (the sft trainer's count)
}

// NewTrainer prepares GRPO of m on backend b. stop are the tokens that end a
// rollout (EOS, end-of-turn); cfg.Sampling.StopTokens are added to them.
func NewTrainer(cfg Config, b backends.Backend, m *model.Model, stop []int) (*Trainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	for _, id := range cfg.Sampling.StopTokens {
		if !slices.Contains(stop, id) {
			stop = append(stop, id)
		}
	}
	if len(stop) == 0 {
		return nil, errors.New("grpo: no stop token: a rollout could never end its turn")
	}
	dt, err := sft.ComputeDType(cfg.Precision)
	if err != nil {
		return nil, fmt.Errorf("%w: grpo.%v", ErrConfig, err)
	}
	model.RegisterDotGeneralGradient()
	t := &Trainer{cfg: cfg, model: m, backend: b, dtype: dt, stop: stop}
	if cfg.LoRA.Enabled() {
		t.adapter = sft.NewAdapters(cfg.sft()).Apply
	}
	if cfg.KLCoef > 0 {
		// The reference is the student as it is now. LoRA trains adapters
		// only, so it is the base weights with the adapters left out; full
		// fine-tuning trains the weights themselves, so they are copied,
		// into a context the optimizer and checkpoints never see.
		refCtx := m.Ctx
		if !cfg.LoRA.Enabled() {
			if refCtx, err = m.Ctx.Clone(); err != nil {
				return nil, fmt.Errorf("grpo: copy the reference weights: %w", err)
			}
			for v := range refCtx.IterVariables() {
				v.SetTrainable(false)
			}
		}
		if t.ref, err = t.logProbsExec(refCtx, nil); err != nil {
			return nil, fmt.Errorf("grpo: reference log-probability graph: %w", err)
		}
	}
	if t.sft, err = sft.NewTrainer(cfg.sft(), b, m.Ctx, t.loss); err != nil {
		return nil, err
	}
	if t.gen, err = model.NewGenerator(b, m); err != nil {
		return nil, fmt.Errorf("grpo: generator: %w", err)
	}
	t.gen.ComputeDType, t.gen.Adapter = dt, t.adapter
	t.gen.MaxBatch = cfg.SampleBatch
	if t.logp, err = t.logProbsExec(m.Ctx, t.adapter); err != nil {
		return nil, fmt.Errorf("grpo: log-probability graph: %w", err)
	}
	return t, nil
}

// logProbsExec computes log-probabilities without dropout or gradient from
// the weights in ctx, with adapter (nil: none).
func (t *Trainer) logProbsExec(ctx *mlctx.Context, adapter model.Adapter) (*mlctx.Exec, error) {
	e, err := mlctx.NewExec(t.backend, ctx, func(ctx *mlctx.Context, in []*Node) []*Node {
		ctx.SetTraining(in[0].Graph(), false)
		return []*Node{t.logProbs(ctx, sft.BatchNodes{Tokens: in[0], Targets: in[1], Positions: in[2], Segments: in[3]}, adapter)}
	})
	if err != nil {
		return nil, err
	}
	e.SetMaxCache(-1)
	return e, nil
}

// logProbs is the log-probability of every target, [rows, len], under the
// weights in ctx with adapter (nil: none).
func (t *Trainer) logProbs(ctx *mlctx.Context, b sft.BatchNodes, adapter model.Adapter) *Node {
	g := b.Tokens.Graph()
	model.UseComputeDType(ctx, g, t.dtype)
	if adapter != nil {
		model.UseAdapter(ctx, g, adapter)
	}
	logits := model.ForwardSegments(ctx, t.model.Config, b.Tokens, b.Positions, b.Segments)
	return model.TokenLogProbs(logits, b.Targets)
}

// loss is the summed loss of a micro-batch (the sft trainer divides by the
// mini-batch's completion tokens): per completion token the clipped
// surrogate −min(ratio·A, clip(ratio, 1−ε, 1+ε)·A) with ratio =
// exp(logp − logp_old), plus β·(exp(d) − d − 1), d = logp_ref − logp, when
// KLCoef β > 0. Where the clipped term is the smaller, its gradient is zero;
// that is written as a select so no tie-breaking of Min's gradient is
// involved. It reports the number of clipped tokens, and the summed KL with
// a KL term, through sft.AddStats.
func (t *Trainer) loss(ctx *mlctx.Context, b sft.BatchNodes) *Node {
	g := b.Tokens.Graph()
	eps := t.cfg.ClipEpsilon
	old, adv := b.Aux[auxOldLogProb], b.Aux[auxAdvantage]
	logp := t.logProbs(ctx, b, t.adapter)
	ratio := Exp(Sub(logp, old))
	zero := ZerosLike(adv)
	clipped := LogicalOr(
		LogicalAnd(GreaterThan(adv, zero), GreaterThan(ratio, Scalar(g, dtypes.Float32, 1+eps))),
		LogicalAnd(LessThan(adv, zero), LessThan(ratio, Scalar(g, dtypes.Float32, 1-eps))))
	bound := Where(GreaterThan(adv, zero), Scalar(g, dtypes.Float32, 1+eps), Scalar(g, dtypes.Float32, 1-eps))
	surrogate := Where(clipped, Mul(bound, adv), Mul(ratio, adv))
	sft.AddStats(ctx, g, ReduceAllSum(Mul(ConvertDType(clipped, dtypes.Float32), b.Weights)))
	if t.ref == nil {
		return Neg(ReduceAllSum(Mul(surrogate, b.Weights)))
	}
	// d is zeroed off the completion tokens, where logp may be anything
	// (padding) and exp(d) could overflow into a NaN that a zero weight
	// would not cancel.
	d := Where(GreaterThan(b.Weights, ZerosLike(b.Weights)), Sub(b.Aux[auxRefLogProb], logp), ZerosLike(logp))
	kl := Sub(Sub(Exp(d), d), OnesLike(d))
	sft.AddStats(ctx, g, ReduceAllSum(Mul(kl, b.Weights)))
	return ReduceAllSum(Mul(Sub(MulScalar(kl, t.cfg.KLCoef), surrogate), b.Weights))
}

// rollout is one sampled completion of a question.
type rollout struct {
	question  int // index in the step's questions
	prompt    []int
	result    model.Result
	reward    float64
	advantage float64
}

// StepStats is what one GRPO step measured.
type StepStats struct {
	RewardMean     float64 // over all rollouts
	SignalFraction float64 // groups whose rewards differ
	Loss           float64 // loss per completion token (surrogate + β·KL), mean over the updates
	GradNorm       float64 // before clipping, mean over the updates
	ClipFraction   float64 // completion tokens whose ratio was clipped
	KL             float64 // mean KL to the reference per completion token in the updates (0 without a KL term)
	CompletionLen  float64 // mean tokens per rollout, stop token included
	Updates        int     // optimizer steps taken (mini-batches with signal)
	Tokens         int     // completion tokens sampled
	SampleSeconds  float64
	TrainSeconds   float64
}

// rolloutSeed seeds rollout r of the question in slot j of GRPO step step:
// a function of those numbers alone, never of batching.
func rolloutSeed(seed int64, step, slot, r int) uint64 {
	var b [32]byte
	binary.LittleEndian.PutUint64(b[0:], uint64(seed))
	binary.LittleEndian.PutUint64(b[8:], uint64(step))
	binary.LittleEndian.PutUint64(b[16:], uint64(slot))
	binary.LittleEndian.PutUint64(b[24:], uint64(r))
	h := sha256.Sum256(b[:])
	return binary.LittleEndian.Uint64(h[:8])
}

// Step runs GRPO step step (0-based, it seeds the rollouts) on qs at
// learning rate lr.
func (t *Trainer) Step(step int, qs []Question, reward Reward, lr float64) (st StepStats, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("grpo step %d: %v", step+1, r)
		}
	}()
	start := time.Now()
	rs, err := t.sample(step, qs, reward)
	if err != nil {
		return st, err
	}
	st.SampleSeconds = time.Since(start).Seconds()
	// Rewards and group-relative advantages.
	signal, groups := 0, 0
	var kept []*rollout
	for q := range qs {
		group := rs[q*t.cfg.Group : (q+1)*t.cfg.Group]
		mean, std := meanStd(group)
		groups++
		if std == 0 {
			continue
		}
		signal++
		for i := range group {
			group[i].advantage = (group[i].reward - mean) / (std + advantageEps)
			kept = append(kept, &group[i])
		}
	}
	for i := range rs {
		st.RewardMean += rs[i].reward
		st.Tokens += len(rs[i].result.Tokens)
	}
	st.RewardMean /= float64(len(rs))
	st.CompletionLen = float64(st.Tokens) / float64(len(rs))
	st.SignalFraction = float64(signal) / float64(groups)

	// Old (and reference) log-probabilities once, then one update per
	// mini-batch.
	start = time.Now()
	var minis [][]*sft.Batch
	for lo := 0; lo < len(kept); lo += t.cfg.MiniBatch {
		var micro []*sft.Batch
		mb := kept[lo:min(lo+t.cfg.MiniBatch, len(kept))]
		for mlo := 0; mlo < len(mb); mlo += t.cfg.MicroBatch {
			b := t.batch(mb[mlo:min(mlo+t.cfg.MicroBatch, len(mb))])
			if err := t.fixedLogProbs(b); err != nil {
				return st, fmt.Errorf("grpo step %d: %w", step+1, err)
			}
			micro = append(micro, b)
		}
		minis = append(minis, micro)
	}
	var targets int
	var clippedTokens, klSum float64
	for _, micro := range minis {
		s, err := t.sft.Step(micro, lr)
		if err != nil {
			return st, fmt.Errorf("grpo step %d: %w", step+1, err)
		}
		st.Updates++
		st.Loss += s.Loss
		st.GradNorm += s.GradNorm
		targets += s.Targets
		clippedTokens += s.Stats[0]
		if t.ref != nil {
			klSum += s.Stats[1]
		}
	}
	t.updates = t.sft.StepsDone()
	if st.Updates > 0 {
		st.Loss /= float64(st.Updates)
		st.GradNorm /= float64(st.Updates)
		st.ClipFraction = clippedTokens / float64(targets)
		st.KL = klSum / float64(targets)
	}
	st.TrainSeconds = time.Since(start).Seconds()
	return st, nil
}

// sample draws Group rollouts of every question and rewards them; rollout
// r of question q is at q·Group + r.
func (t *Trainer) sample(step int, qs []Question, reward Reward) ([]rollout, error) {
	reqs := make([]model.Request, 0, len(qs)*t.cfg.Group)
	for j, q := range qs {
		for r := range t.cfg.Group {
			reqs = append(reqs, model.Request{Prompt: q.Prompt, Seed: rolloutSeed(t.cfg.Seed, step, j, r)})
		}
	}
	s := t.cfg.Sampling
	s.StopTokens = t.stop
	res, err := t.gen.Generate(reqs, s)
	if err != nil {
		return nil, fmt.Errorf("grpo step %d: sample: %w", step+1, err)
	}
	rs := make([]rollout, len(res))
	for i, r := range res {
		q := i / t.cfg.Group
		rs[i] = rollout{question: q, prompt: qs[q].Prompt, result: r, reward: reward(qs[q], r)}
		if math.IsNaN(rs[i].reward) || math.IsInf(rs[i].reward, 0) {
			return nil, fmt.Errorf("grpo step %d: question %s: reward %g", step+1, qs[q].ID, rs[i].reward)
		}
	}
	return rs, nil
}

// meanStd is the group's mean reward and sample standard deviation (n−1,
// as torch.std and TRL).
func meanStd(group []rollout) (mean, std float64) {
	for _, r := range group {
		mean += r.reward
	}
	mean /= float64(len(group))
	for _, r := range group {
		std += (r.reward - mean) * (r.reward - mean)
	}
	return mean, math.Sqrt(std / float64(len(group)-1))
}

// rowLen is the padded length of a row of n tokens: the next power of two
// from 16, so that few shapes (compilations) occur.
func rowLen(n int) int {
	l := 16
	for l < n {
		l *= 2
	}
	return l
}

// batch lays rollouts out one per row, padded to MicroBatch rows: tokens
// prompt + completion, a loss weight on every position whose target is a
// completion token (the stop token included), the advantage there.
func (t *Trainer) batch(rs []*rollout) *sft.Batch {
	longest := 0
	for _, r := range rs {
		longest = max(longest, len(r.prompt)+len(r.result.Tokens))
	}
	rows, l := t.cfg.MicroBatch, rowLen(longest)
	n := rows * l
	b := &sft.Batch{Rows: rows, Len: l, Tokens: make([]int32, n), Targets: make([]int32, n),
		Positions: make([]int32, n), Segments: make([]int32, n), Weights: make([]float32, n), Examples: len(rs)}
	naux := auxRefLogProb // old log-probabilities and advantages
	if t.ref != nil {
		naux++
	}
	b.Aux = make([][]float32, naux)
	for i := range b.Aux {
		b.Aux[i] = make([]float32, n)
	}
	for row, r := range rs {
		seq := append(slices.Clone(r.prompt), r.result.Tokens...)
		base := row * l
		for i, id := range seq {
			b.Tokens[base+i], b.Positions[base+i], b.Segments[base+i] = int32(id), int32(i), 1
			if i+1 < len(seq) {
				b.Targets[base+i] = int32(seq[i+1])
				if i+1 >= len(r.prompt) {
					b.Weights[base+i] = 1
					b.Aux[auxAdvantage][base+i] = float32(r.advantage)
				}
			}
		}
	}
	return b
}

// fixedLogProbs fills b's old log-probabilities with the current policy's
// and, with a KL term, its reference log-probabilities with the reference
// policy's, on the loss positions (zero elsewhere).
func (t *Trainer) fixedLogProbs(b *sft.Batch) error {
	fill := func(e *mlctx.Exec, aux int, what string) error {
		out, err := e.Exec(
			tensors.FromFlatDataAndDimensions(b.Tokens, b.Rows, b.Len),
			tensors.FromFlatDataAndDimensions(b.Targets, b.Rows, b.Len),
			tensors.FromFlatDataAndDimensions(b.Positions, b.Rows, b.Len),
			tensors.FromFlatDataAndDimensions(b.Segments, b.Rows, b.Len))
		if err != nil {
			return fmt.Errorf("%s log-probabilities: %w", what, err)
		}
		lp := tensors.MustCopyFlatData[float32](out[0])
		out[0].FinalizeAll()
		for i, w := range b.Weights {
			if w != 0 {
				b.Aux[aux][i] = lp[i]
			}
		}
		return nil
	}
	if err := fill(t.logp, auxOldLogProb, "old"); err != nil {
		return err
	}
	if t.ref != nil {
		return fill(t.ref, auxRefLogProb, "reference")
	}
	return nil
}

// prepare creates the trained variables and optimizer state, so that a
// checkpoint can be loaded before the first step.
func (t *Trainer) prepare() error {
	r := &rollout{prompt: []int{0}, result: model.Result{Tokens: []int{0}}}
	return t.sft.Prepare(t.batch([]*rollout{r}))
}

// Params are the trained variables (known after the first step or a
// resume).
func (t *Trainer) Params() []*mlctx.Variable { return t.sft.Params() }

// Model is the model being trained (adapters not merged).
func (t *Trainer) Model() *model.Model { return t.model }

// Config is the recipe.
func (t *Trainer) Config() Config { return t.cfg }
