package model

import (
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

// CrossEntropy is the mean next-token loss over the masked positions:
// logits [B, T, V], targets [B, T] (int32), weights [B, T] (float32; 1 for a
// token that counts, 0 for one that does not — prompt, padding). Per token it
// is −TokenLogProbs. Returns 0 when no weight is set.
func CrossEntropy(logits, targets, weights *Node) *Node {
	g := logits.Graph()
	n := logits.Shape().Dimensions[0] * logits.Shape().Dimensions[1]
	w := Reshape(ConvertDType(weights, logits.DType()), n)
	total := ReduceAllSum(Mul(Neg(Reshape(TokenLogProbs(logits, targets), n)), w))
	count := Max(ReduceAllSum(w), ScalarOne(g, logits.DType()))
	return Div(total, count)
}

// TokenLogProbs is log softmax(logits)[target] per position, [B, T], for
// logits [B, T, V] and targets [B, T] (int32): logits[target] −
// logsumexp(logits), the target logit taken by Gather, so no [B, T, V]
// one-hot is ever built (at Qwen's 151,936-token vocabulary a one-hot alone
// is gigabytes).
func TokenLogProbs(logits, targets *Node) *Node {
	g := logits.Graph()
	b, t, v := logits.Shape().Dimensions[0], logits.Shape().Dimensions[1], logits.Shape().Dimensions[2]
	n := b * t
	flat := Reshape(logits, n, v)
	maxLogit := StopGradient(ReduceAndKeep(flat, ReduceMax, -1))                              // [N, 1]
	lse := Add(Squeeze(maxLogit, -1), Log(ReduceSum(Exp(Sub(flat, maxLogit)), -1)))           // [N]
	rows := Iota(g, shapes.Make(dtypes.Int32, n, 1), 0)                                       // [N, 1]
	idx := Concatenate([]*Node{rows, Reshape(ConvertDType(targets, dtypes.Int32), n, 1)}, -1) // [N, 2]
	return Reshape(Sub(Gather(flat, idx), lse), b, t)
}
