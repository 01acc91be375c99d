package model

import (
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
)

// SGDStep builds one plain SGD step over every variable in ctx for
// unpadded sequences tokens [B, T]: forward, CrossEntropy against targets
// with weights, backward, w -= lr·grad. It returns the loss. Benchmarks and
// the GPU check use it; fine-tuning proper (Adam, LoRA, clipping) is built on
// Forward and CrossEntropy by the trainer.
func SGDStep(ctx *mlctx.Context, cfg *Config, tokens, targets, weights *Node, lr float64) *Node {
	g := tokens.Graph()
	b, t := tokens.Shape().Dimensions[0], tokens.Shape().Dimensions[1]
	positions := Iota(g, shapes.Make(dtypes.Int32, b, t), 1)
	valid := OnesLike(ConvertDType(positions, dtypes.Bool))
	loss := CrossEntropy(Forward(ctx, cfg, tokens, positions, valid), targets, weights)
	var vars []*mlctx.Variable
	var values []*Node
	for v := range ctx.IterVariables() {
		vars = append(vars, v)
		values = append(values, v.ValueGraph(g))
	}
	for i, grad := range Gradient(loss, values...) {
		vars[i].SetValueGraph(Sub(values[i], MulScalar(grad, lr)))
	}
	return loss
}

// Logits runs Forward once over seqs, right-padded into one batch, and
// returns the logits of every real position: [sequence][position][vocab].
// It compiles a graph per call: for checks and scoring, not for loops.
func Logits(b backends.Backend, m *Model, seqs [][]int) ([][][]float32, error) {
	tmax := 0
	for _, p := range seqs {
		tmax = max(tmax, len(p))
	}
	n := len(seqs)
	tokens, positions, valid := make([]int32, n*tmax), make([]int32, n*tmax), make([]bool, n*tmax)
	for i, p := range seqs {
		for j := range tmax {
			positions[i*tmax+j] = int32(j)
			if j < len(p) {
				tokens[i*tmax+j], valid[i*tmax+j] = int32(p[j]), true
			}
		}
	}
	e, err := mlctx.NewExec(b, m.Ctx, func(ctx *mlctx.Context, tok, pos, val *Node) *Node {
		return Forward(ctx, m.Config, tok, pos, val)
	})
	if err != nil {
		return nil, err
	}
	defer e.Finalize()
	out, err := e.Exec1(tensors.FromFlatDataAndDimensions(tokens, n, tmax),
		tensors.FromFlatDataAndDimensions(positions, n, tmax), tensors.FromFlatDataAndDimensions(valid, n, tmax))
	if err != nil {
		return nil, err
	}
	defer out.FinalizeAll()
	flat, err := tensors.CopyFlatData[float32](out)
	if err != nil {
		return nil, err
	}
	v := m.Config.VocabSize
	res := make([][][]float32, n)
	for i, p := range seqs {
		for j := range p {
			res[i] = append(res[i], flat[(i*tmax+j)*v:(i*tmax+j+1)*v])
		}
	}
	return res, nil
}
