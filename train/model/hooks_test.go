package model

import (
	"maps"
	"slices"
	"testing"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
)

// TestForwardSegments: two prompts packed in one row, positions restarting,
// give the logits each has alone — also with Mistral's sliding window (4),
// which the packed prompts exceed, and with longrope, where only the first
// prompt passes the original context (12) and takes the long factors.
func TestForwardSegments(t *testing.T) {
	b := testBackend(t)
	short := [][]int{{5, 17, 33, 2, 9, 41, 60, 11}, {12, 4, 40, 7, 8, 9}}
	long := [][]int{{5, 17, 33, 2, 9, 41, 60, 11, 3, 8, 13, 21, 34, 55, 1, 2}, {12, 4, 40, 7, 8, 9}}
	for _, tc := range []struct {
		name, config string
		prompts      [][]int
	}{{"qwen2", tinyQwen2, short}, {"mistral", tinyMistral, short}, {"phi4 longrope", tinyPhi4, long}} {
		m := NewRandom(mustConfig(t, tc.config), 4, 0.15)
		prompts := tc.prompts
		alone, err := Logits(b, m, prompts)
		if err != nil {
			t.Fatal(err)
		}
		T := Bucket(len(prompts[0])+len(prompts[1])+1, 16) // then padding
		var tokens, positions, segments []int32
		for s, p := range prompts {
			for j, tok := range p {
				tokens, positions, segments = append(tokens, int32(tok)), append(positions, int32(j)), append(segments, int32(s+1))
			}
		}
		for len(tokens) < T {
			tokens, positions, segments = append(tokens, 0), append(positions, 0), append(segments, 0)
		}
		out := mlctx.MustExecOnce(b, m.Ctx, func(ctx *mlctx.Context, tok, pos, seg *Node) *Node {
			return ForwardSegments(ctx, m.Config, tok, pos, seg)
		}, tensors.FromFlatDataAndDimensions(tokens, 1, T), tensors.FromFlatDataAndDimensions(positions, 1, T),
			tensors.FromFlatDataAndDimensions(segments, 1, T))
		packed := tensors.MustCopyFlatData[float32](out)
		v := m.Config.VocabSize
		row := 0
		for s, p := range prompts {
			for j := range p {
				if d := maxAbsDiff(packed[row*v:(row+1)*v], alone[s][j]); d > 1e-5 {
					t.Errorf("%s: segment %d position %d: packed logits differ by %.2e", tc.name, s+1, j, d)
				}
				row++
			}
		}
	}
}

// TestAdapterHook: an adapter set with UseAdapter sees every projection by
// name and changes the output; without it the model is untouched.
func TestAdapterHook(t *testing.T) {
	b := testBackend(t)
	m := NewRandom(mustConfig(t, tinyLlama), 4, 0.15)
	prompt := [][]int{{5, 17, 33}}
	base, err := Logits(b, m, prompt)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	run := func(adapter Adapter) []float32 {
		out := mlctx.MustExecOnce(b, m.Ctx, func(ctx *mlctx.Context, tok, pos, val *Node) *Node {
			UseAdapter(ctx, tok.Graph(), adapter)
			return Forward(ctx, m.Config, tok, pos, val)
		}, [][]int32{{5, 17, 33}}, [][]int32{{0, 1, 2}}, [][]bool{{true, true, true}})
		return tensors.MustCopyFlatData[float32](out)
	}
	same := run(func(ctx *mlctx.Context, module string, x, y *Node) *Node {
		seen[module]++
		if w := ctx.GetVariable("weight"); w == nil {
			t.Errorf("%s: ctx %s is not scoped at the projection", module, ctx.Scope())
		}
		return y
	})
	want := []string{"down_proj", "gate_proj", "k_proj", "lm_head", "o_proj", "q_proj", "up_proj", "v_proj"}
	if got := slices.Sorted(maps.Keys(seen)); !slices.Equal(got, want) {
		t.Errorf("adapter saw %v, want %v", got, want)
	}
	if seen["q_proj"] != m.Config.NumHiddenLayers {
		t.Errorf("q_proj seen %d times, want once per layer (%d)", seen["q_proj"], m.Config.NumHiddenLayers)
	}
	flatBase := slices.Concat(base[0]...)
	if d := maxAbsDiff(same, flatBase); d > 1e-6 {
		t.Errorf("identity adapter changed logits by %.2e", d)
	}
	changed := run(func(_ *mlctx.Context, module string, x, y *Node) *Node {
		if module == "down_proj" {
			return ZerosLike(y)
		}
		return y
	})
	if d := maxAbsDiff(changed, flatBase); d < 1e-3 {
		t.Errorf("zeroing down_proj changed logits by only %.2e", d)
	}
}
