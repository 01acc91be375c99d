package sft

import (
	"math"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX's graph DSL reads best unqualified.
)

// LearningRate is the learning rate of the optimizer step that follows
// `done` completed steps out of total, with warm-up steps of linear warm-up
// and then cosine decay to zero: Hugging Face's
// get_cosine_schedule_with_warmup, counted in optimizer steps (never
// micro-steps), so that gradient accumulation does not stretch the schedule.
func LearningRate(peak float64, done, warmup, total int) float64 {
	if done < warmup {
		return peak * float64(done) / float64(max(1, warmup))
	}
	progress := float64(done-warmup) / float64(max(1, total-warmup))
	return peak * max(0, 0.5*(1+math.Cos(math.Pi*progress)))
}

// WarmupSteps is ceil(ratio × total), as Hugging Face's Trainer counts it.
func WarmupSteps(ratio float64, total int) int {
	return int(math.Ceil(ratio * float64(total)))
}

// adamScalars are the host-computed factors of one AdamW step, in the order
// the apply graph takes them. They are computed in float64 as
// torch.optim.AdamW does, then passed as f32 scalars.
type adamScalars struct {
	invTargets  float64 // 1 / loss tokens of the step: turns summed gradients into the mean's
	decayFactor float64 // 1 - lr × weight decay
	stepSize    float64 // lr / (1 - β1^t)
	bc2Sqrt     float64 // sqrt(1 - β2^t)
}

func newAdamScalars(cfg Config, lr float64, t int, targets int) adamScalars {
	return adamScalars{
		invTargets:  1 / float64(targets),
		decayFactor: 1 - lr*cfg.WeightDecay,
		stepSize:    lr / (1 - math.Pow(cfg.Beta1, float64(t))),
		bc2Sqrt:     math.Sqrt(1 - math.Pow(cfg.Beta2, float64(t))),
	}
}

// clipAndAdamW builds one optimizer update: grads are the summed gradients,
// scaled by invTargets; their global L2 norm is clipped to cfg.ClipNorm as
// torch.nn.utils.clip_grad_norm_ does; then each parameter takes a
// torch.optim.AdamW step (decoupled weight decay where decay[i]). It returns
// the new parameters and moments, and the global norm before clipping.
func clipAndAdamW(cfg Config, params, grads, m1, m2 []*Node, decay []bool,
	invTargets, decayFactor, stepSize, bc2Sqrt *Node) (newParams, newM1, newM2 []*Node, norm *Node) {
	g := invTargets.Graph()
	norms := make([]*Node, len(grads))
	for i := range grads {
		grads[i] = Mul(grads[i], invTargets)
		norms[i] = Sqrt(ReduceAllSum(Square(grads[i]))) // per-tensor norms, then their norm, as torch
	}
	norm = Sqrt(ReduceAllSum(Square(Stack(norms, 0))))
	if cfg.ClipNorm > 0 {
		coef := Div(Scalar(g, norm.DType(), cfg.ClipNorm), AddScalar(norm, 1e-6))
		coef = Min(coef, Scalar(g, norm.DType(), 1))
		for i := range grads {
			grads[i] = Mul(grads[i], coef)
		}
	}
	b1, b2 := Scalar(g, norm.DType(), cfg.Beta1), Scalar(g, norm.DType(), cfg.Beta2)
	omb1, omb2 := Scalar(g, norm.DType(), 1-cfg.Beta1), Scalar(g, norm.DType(), 1-cfg.Beta2)
	eps := Scalar(g, norm.DType(), cfg.Epsilon)
	for i, p := range params {
		if decay[i] {
			p = Mul(p, decayFactor)
		}
		m := Add(Mul(m1[i], b1), Mul(grads[i], omb1))
		v := Add(Mul(m2[i], b2), Mul(Mul(grads[i], grads[i]), omb2))
		denom := Add(Div(Sqrt(v), bc2Sqrt), eps)
		p = Sub(p, Mul(Div(m, denom), stepSize))
		newParams, newM1, newM2 = append(newParams, p), append(newM1, m), append(newM2, v)
	}
	return newParams, newM1, newM2, norm
}
