package model

import (
	"testing"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
)

// TestSGDStepLearns: a few SGD steps on one batch lower its loss, and the
// updated weights are what the next step (and Save) sees — also for Mistral,
// whose window (4) is shorter than the sequences.
func TestSGDStepLearns(t *testing.T) {
	RegisterDotGeneralGradient()
	for _, tc := range []struct{ name, config string }{{"llama", tinyLlama}, {"mistral", tinyMistral}} {
		m := NewRandom(mustConfig(t, tc.config), 9, 0.1)
		v := m.Config.VocabSize
		const B, T = 2, 8
		tokens, targets, weights := make([]int32, B*T), make([]int32, B*T), make([]float32, B*T)
		for i := range tokens {
			tokens[i], targets[i], weights[i] = int32(i*5%v), int32((i*5+3)%v), 1
		}
		exec := mlctx.MustNewExec(testBackend(t), m.Ctx, func(ctx *mlctx.Context, tok, tgt, w *Node) *Node {
			return SGDStep(ctx, m.Config, tok, tgt, w, 0.5)
		})
		var losses []float32
		for range 4 {
			out := exec.MustExec1(tensors.FromFlatDataAndDimensions(tokens, B, T),
				tensors.FromFlatDataAndDimensions(targets, B, T), tensors.FromFlatDataAndDimensions(weights, B, T))
			losses = append(losses, tensors.ToScalar[float32](out))
		}
		if !(losses[3] < losses[0]-0.1) {
			t.Errorf("%s: losses over 4 SGD steps %v: not learning", tc.name, losses)
		}
	}
}
