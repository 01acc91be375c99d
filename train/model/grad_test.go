package model

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// stockDotGeneralVJP is GoMLX's own DotGeneral gradient, captured before
// any test registers the replacement.
var stockDotGeneralVJP = VJPRegistration[NodeTypeDotGeneral]

func randTensor(rng *rand.Rand, dims ...int) *tensors.Tensor {
	n := numElements(dims)
	data := make([]float32, n)
	for i := range data {
		data[i] = float32(rng.NormFloat64())
	}
	return tensors.FromFlatDataAndDimensions(data, dims...)
}

func maxAbsDiff(a, b []float32) float64 {
	var d float64
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

// TestDotGeneralGradient checks the two-DotGeneral gradient against GoMLX's
// stock one on contractions with batch axes, several crossed and contracted
// axes, and axes in unusual orders (as attention and the projections use them).
func TestDotGeneralGradient(t *testing.T) {
	b := testBackend(t)
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name           string
		lhs, rhs       []int
		lc, lb, rc, rb []int
	}{
		{"linear", []int{2, 3, 5}, []int{4, 5}, []int{2}, nil, []int{1}, nil},
		{"scores", []int{2, 2, 3, 4, 6}, []int{2, 2, 5, 6}, []int{4}, []int{0, 1}, []int{3}, []int{0, 1}},
		{"values", []int{2, 2, 3, 4, 5}, []int{2, 2, 5, 6}, []int{4}, []int{0, 1}, []int{2}, []int{0, 1}},
		{"shuffled", []int{5, 2, 3, 4}, []int{4, 6, 2, 5}, []int{0, 3}, []int{1}, []int{3, 0}, []int{2}},
		{"rope", []int{2, 4, 3, 8}, []int{8, 8}, []int{3}, nil, []int{0}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lhs, rhs := randTensor(rng, c.lhs...), randTensor(rng, c.rhs...)
			grads := func() []*tensors.Tensor {
				return MustExecOnceN(b, func(l, r *Node) []*Node {
					out := DotGeneral(l, c.lc, c.lb, r, c.rc, c.rb)
					w := IotaFull(l.Graph(), out.Shape()) // a non-uniform upstream gradient
					loss := ReduceAllSum(Mul(Sin(ConvertDType(w, out.DType())), out))
					return Gradient(loss, l, r)
				}, lhs, rhs)
			}
			current := VJPRegistration[NodeTypeDotGeneral]
			defer func() { VJPRegistration[NodeTypeDotGeneral] = current }()
			VJPRegistration[NodeTypeDotGeneral] = stockDotGeneralVJP
			want := grads()
			VJPRegistration[NodeTypeDotGeneral] = func(node *Node, v []*Node, _ shapes.Shape) []*Node { return dotGeneralGradient(node, v[0]) }
			got := grads()
			for i, name := range []string{"lhs", "rhs"} {
				w, g := tensors.MustCopyFlatData[float32](want[i]), tensors.MustCopyFlatData[float32](got[i])
				if !want[i].Shape().Equal(got[i].Shape()) {
					t.Fatalf("d%s shape %s, stock %s", name, got[i].Shape(), want[i].Shape())
				}
				if d := maxAbsDiff(w, g); d > 1e-4 {
					t.Errorf("d%s differs from the stock gradient by %.2e", name, d)
				}
			}
		})
	}
}

// TestCrossEntropy compares the gather-based loss and its gradient with a
// direct computation (softmax probabilities, one-hot targets) on a small vocabulary.
func TestCrossEntropy(t *testing.T) {
	b := testBackend(t)
	rng := rand.New(rand.NewPCG(3, 4))
	const B, T, V = 2, 5, 11
	logits := randTensor(rng, B, T, V)
	targets := make([]int32, B*T)
	weights := make([]float32, B*T)
	for i := range targets {
		targets[i] = int32(rng.IntN(V))
		if i%3 != 0 {
			weights[i] = 1
		}
	}
	out := MustExecOnceN(b, func(l, tg, w *Node) []*Node {
		loss := CrossEntropy(l, tg, w)
		return append([]*Node{loss}, Gradient(loss, l)...)
	}, logits, tensors.FromFlatDataAndDimensions(targets, B, T), tensors.FromFlatDataAndDimensions(weights, B, T))
	loss := tensors.ToScalar[float32](out[0])
	grad := tensors.MustCopyFlatData[float32](out[1])

	x := tensors.MustCopyFlatData[float32](logits)
	var wantLoss, count float64
	wantGrad := make([]float32, len(x))
	for _, w := range weights {
		count += float64(w)
	}
	for n := range B * T {
		row := x[n*V : (n+1)*V]
		var sum float64
		for _, v := range row {
			sum += math.Exp(float64(v))
		}
		wantLoss += float64(weights[n]) * (math.Log(sum) - float64(row[targets[n]]))
		for k, v := range row {
			p := math.Exp(float64(v)) / sum
			if k == int(targets[n]) {
				p--
			}
			wantGrad[n*V+k] = float32(float64(weights[n]) * p / count)
		}
	}
	wantLoss /= count
	if d := math.Abs(float64(loss) - wantLoss); d > 1e-5 {
		t.Errorf("loss %.6f, direct %.6f", loss, wantLoss)
	}
	if d := maxAbsDiff(grad, wantGrad); d > 1e-6 {
		t.Errorf("gradient differs from the direct one by %.2e", d)
	}
}

// TestCrossEntropyBuildsNoOneHot: at Qwen's 151,936-token vocabulary, no
// node of the loss that depends on the targets is vocabulary-sized: the
// target logit is gathered, never picked by a [B, T, V] one-hot (which is
// gigabytes at that size; BenchmarkCrossEntropyMemory measures the heap).
func TestCrossEntropyBuildsNoOneHot(t *testing.T) {
	const B, T, V = 2, 3, 151936
	b := testBackend(t)
	// vocabSized lists the nodes of loss's graph that depend on the targets
	// and hold at least V values.
	vocabSized := func(loss func(logits, targets, weights *Node) *Node) []string {
		g := NewGraph(b, "loss")
		logits := Parameter(g, "logits", shapes.Make(dtypes.Float32, B, T, V))
		targets := Parameter(g, "targets", shapes.Make(dtypes.Int32, B, T))
		weights := Parameter(g, "weights", shapes.Make(dtypes.Float32, B, T))
		if out := loss(logits, targets, weights); !out.Shape().IsScalar() {
			t.Fatalf("loss shape %s", out.Shape())
		}
		var found []string
		fromTargets := map[NodeId]bool{targets.Id(): true}
		for _, n := range g.Nodes() { // in creation order: inputs come first
			for _, in := range n.Inputs() {
				fromTargets[n.Id()] = fromTargets[n.Id()] || fromTargets[in.Id()]
			}
			if fromTargets[n.Id()] && n.Shape().Size() >= V {
				found = append(found, n.Type().String()+" "+n.Shape().String())
			}
		}
		return found
	}
	if got := vocabSized(CrossEntropy); len(got) > 0 {
		t.Errorf("CrossEntropy builds vocabulary-sized nodes from the targets: %v", got)
	}
	oneHot := func(logits, targets, weights *Node) *Node {
		return ReduceAllSum(Mul(OneHot(targets, V, dtypes.Float32), logits))
	}
	if got := vocabSized(oneHot); len(got) == 0 {
		t.Error("the check does not see a one-hot formulation")
	}
}
