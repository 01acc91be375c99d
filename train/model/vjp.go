package model

import (
	"reflect"
	"slices"
	"sync"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

// GoMLX's stock gradient of DotGeneral broadcasts both operands to an
// M·N·K temporary before reducing it, which costs seconds and gigabytes on
// even a small model. The gradient is itself two DotGenerals:
//
//	out = lhs ⋅ rhs  (batch axes b, lhs cross axes m, rhs cross axes n, contracted k)
//	dlhs[b, m, k] = Σn v[b, m, n] · rhs[b, n, k]
//	drhs[b, n, k] = Σm v[b, m, n] · lhs[b, m, k]
//
// followed by a transpose back to each operand's axis order.

var registerOnce sync.Once

// RegisterDotGeneralGradient replaces GoMLX's DotGeneral gradient with the
// two-DotGeneral one, process-wide. It is idempotent; Forward's callers
// (training, benchmarks) call it once before building gradient graphs.
func RegisterDotGeneralGradient() {
	registerOnce.Do(func() {
		VJPRegistration[NodeTypeDotGeneral] = func(node *Node, v []*Node, _ shapes.Shape) []*Node {
			return dotGeneralGradient(node, v[0])
		}
	})
}

// dotGeneralAxes reads the axes of a DotGeneral node; GoMLX keeps them in an
// unexported struct, so they are read by reflection.
func dotGeneralAxes(node *Node) (lhsContract, lhsBatch, rhsContract, rhsBatch []int) {
	in := reflect.ValueOf(node).Elem().FieldByName("inputs").Elem().Elem()
	ints := func(field string) []int {
		f := in.FieldByName(field)
		out := make([]int, f.Len())
		for i := range out {
			out[i] = int(f.Index(i).Int())
		}
		return out
	}
	return ints("lhsContractingAxes"), ints("lhsBatchAxes"), ints("rhsContractingAxes"), ints("rhsBatchAxes")
}

// crossAxes lists the axes of a rank-r operand that are neither contracted nor batch.
func crossAxes(rank int, contract, batch []int) []int {
	var out []int
	for a := range rank {
		if !slices.Contains(contract, a) && !slices.Contains(batch, a) {
			out = append(out, a)
		}
	}
	return out
}

func dotGeneralGradient(node, v *Node) []*Node {
	inputs := node.Inputs()
	lhs, rhs := inputs[0], inputs[1]
	lc, lb, rc, rb := dotGeneralAxes(node)
	lx, rx := crossAxes(lhs.Rank(), lc, lb), crossAxes(rhs.Rank(), rc, rb)
	nb := len(lb)
	// v's axes: [batch…, lhs cross…, rhs cross…].
	vBatch, vLhsCross, vRhsCross := seq(0, nb), seq(nb, len(lx)), seq(nb+len(lx), len(rx))

	// grad wrt one operand: contract v's "other cross" axes with the other
	// operand's cross axes. The result's axes are [batch…, this cross…,
	// other's remaining axes (its contracted axes, in increasing order)…].
	grad := func(this *Node, thisContract, thisBatch, thisCross []int, vOtherCross []int,
		other *Node, otherContract, otherBatch, otherCross []int) *Node {
		d := DotGeneral(v, vOtherCross, vBatch, other, otherCross, otherBatch)
		// Map each result axis to the axis of `this` it stands for.
		resultToThis := make([]int, 0, this.Rank())
		resultToThis = append(resultToThis, thisBatch...)
		resultToThis = append(resultToThis, thisCross...)
		remaining := slices.Clone(otherContract)
		slices.Sort(remaining)
		for _, oa := range remaining {
			resultToThis = append(resultToThis, thisContract[slices.Index(otherContract, oa)])
		}
		perm := make([]int, this.Rank()) // perm[thisAxis] = result axis
		changed := false
		for ri, ta := range resultToThis {
			perm[ta] = ri
			changed = changed || ri != ta
		}
		if changed {
			d = TransposeAllAxes(d, perm...)
		}
		if d.DType() != this.DType() {
			d = ConvertDType(d, this.DType())
		}
		return d
	}
	return []*Node{
		grad(lhs, lc, lb, lx, vRhsCross, rhs, rc, rb, rx),
		grad(rhs, rc, rb, rx, vLhsCross, lhs, lc, lb, lx),
	}
}

func seq(start, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = start + i
	}
	return out
}
