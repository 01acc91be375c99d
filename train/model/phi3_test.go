package model

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestPhi3Config: Phi-3's fields as transformers reads them — the partial
// rotary, longrope's two factor sets, its switch point and attention
// factor, the window on every layer — and the mistakes a config can make.
func TestPhi3Config(t *testing.T) {
	c := mustConfig(t, tinyPhi4)
	if c.RotaryDim() != 8 || len(c.InvFreq(0)) != 4 || c.LongRopeFrom() != 12 || c.MaxLength() != 12 {
		t.Errorf("rotary dim %d, %d frequencies, long from %d, max length %d; want 8, 4, 12, 12",
			c.RotaryDim(), len(c.InvFreq(0)), c.LongRopeFrom(), c.MaxLength())
	}
	if want := math.Sqrt(1 + math.Log(48.0/12)/math.Log(12)); math.Abs(c.RopeAttentionFactor()-want) > 1e-12 {
		t.Errorf("attention factor %g, want %g (max_position_embeddings / original)", c.RopeAttentionFactor(), want)
	}
	short, long := c.InvFreq(0), c.LongInvFreq(0)
	for i, f := range []struct{ s, l float64 }{{1, 1}, {1.5, 2}, {3, 6}, {7, 20}} {
		base := 1 / math.Pow(10000, float64(2*i)/8)
		if math.Abs(float64(short[i])-base/f.s) > 1e-6*base || math.Abs(float64(long[i])-base/f.l) > 1e-6*base {
			t.Errorf("frequency %d: short %g long %g, want %g and %g", i, short[i], long[i], base/f.s, base/f.l)
		}
	}
	if c.Window() != 262144 || c.LayerWindow(1) != 262144 {
		t.Errorf("phi3 sliding_window: window %d on layer 1", c.LayerWindow(1))
	}
	mini := mustConfig(t, tinyPhi3)
	if mini.RotaryDim() != 16 || mini.LongRope() || mini.MaxLength() != 0 || mini.RopeAttentionFactor() != 1 || mini.Window() != 4 {
		t.Errorf("phi3 mini: %+v", mini)
	}
	if w := mustConfig(t, strings.Replace(tinyPhi3, `"sliding_window": 4`, `"sliding_window": null`, 1)).Window(); w != 0 {
		t.Errorf("sliding_window null: window %d, want none", w)
	}
	// An explicit attention_factor wins; without original_max_position_embeddings, factor sets it.
	explicit := mustConfig(t, strings.Replace(tinyPhi4, `"long_factor"`, `"attention_factor": 1.5, "long_factor"`, 1))
	if explicit.RopeAttentionFactor() != 1.5 {
		t.Errorf("attention_factor 1.5 read as %g", explicit.RopeAttentionFactor())
	}
	noOrig := mustConfig(t, strings.Replace(strings.Replace(tinyPhi4, `"original_max_position_embeddings": 12,`, "", 1),
		`"type": "longrope",`, `"type": "longrope", "factor": 4.0,`, 1))
	if want := math.Sqrt(1 + math.Log(4)/math.Log(48)); noOrig.LongRopeFrom() != 48 || math.Abs(noOrig.RopeAttentionFactor()-want) > 1e-12 {
		t.Errorf("longrope with factor only: from %d, attention %g; want 48, %g", noOrig.LongRopeFrom(), noOrig.RopeAttentionFactor(), want)
	}

	refuses(t, []badEdit{
		{tinyPhi4, `"short_factor": [1.0, 1.5, 3.0, 7.0]`, `"short_factor": [1.0, 1.5, 3.0]`, "short_factor has 3 entries, want 4"},
		{tinyPhi4, `"long_factor": [1.0, 2.0, 6.0, 20.0]`, `"long_factor": [1.0, 2.0, 0, 20.0]`, "long_factor[2]"},
		{tinyPhi4, `"partial_rotary_factor": 0.5`, `"partial_rotary_factor": 0.3125`, "head_dim: rotates 5 dimensions"},
		{tinyPhi4, `"partial_rotary_factor": 0.5`, `"partial_rotary_factor": 1.5`, "partial_rotary_factor"},
		{tinyPhi4, `"original_max_position_embeddings": 12,`, ``, "needs original_max_position_embeddings or a factor"},
		{tinyPhi3, `"hidden_act": "silu"`, `"hidden_act": "silu", "attention_bias": true`, "attention_bias"},
		{tinyLlama, `"hidden_act": "silu"`, `"hidden_act": "silu", "partial_rotary_factor": 0.5`, "partial_rotary_factor: 0.5: only phi3"},
	})
}

// TestPhi3Checkpoint: a Phi-3 checkpoint stores q/k/v as one qkv_proj and
// gate/up as one gate_up_proj, as transformers writes them; Load splits
// them into the model's own projections, Save fuses them back, both
// exactly, and config.json keeps rope_scaling as the file spelt it.
func TestPhi3Checkpoint(t *testing.T) {
	ctx := context.Background()
	cfg := mustConfig(t, tinyPhi4)
	want := NewRandom(cfg, 3, 0.1)
	dir := t.TempDir()
	if err := want.Save(ctx, openDir(t, dir), "", SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	hs, err := ReadSafetensorsHeader(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	shapes := map[string][]int{}
	for _, h := range hs {
		shapes[h.Name] = h.Shape
	}
	// 4 heads and 2 key/value heads of 16: 64 + 2·32 rows; gate and up: 2·80.
	if s := shapes["model.layers.1.self_attn.qkv_proj.weight"]; !slices.Equal(s, []int{128, 64}) {
		t.Errorf("qkv_proj shape %v, want [128 64]", s)
	}
	if s := shapes["model.layers.0.mlp.gate_up_proj.weight"]; !slices.Equal(s, []int{160, 64}) {
		t.Errorf("gate_up_proj shape %v, want [160 64]", s)
	}
	for _, split := range []string{"model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.up_proj.weight", "lm_head.weight"} {
		if _, ok := shapes[split]; ok {
			t.Errorf("checkpoint holds %s", split)
		}
	}
	if len(hs) != len(CheckpointTensors(cfg)) {
		t.Errorf("%d tensors written, CheckpointTensors lists %d", len(hs), len(CheckpointTensors(cfg)))
	}

	got, err := Load(ctx, openDir(t, dir), "")
	if err != nil {
		t.Fatal(err)
	}
	sameWeights(t, got, want, "through a fused checkpoint")
	_, params, err := Inspect(ctx, openDir(t, dir), "")
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, h := range TensorNames(cfg) {
		n += int64(numElements(h.Shape))
	}
	if params != n {
		t.Errorf("Inspect counts %d parameters, the model has %d", params, n)
	}

	raw, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	var saved struct {
		RopeScaling map[string]any `json:"rope_scaling"`
	}
	if err := json.Unmarshal(raw, &saved); err != nil {
		t.Fatal(err)
	}
	if _, ok := saved.RopeScaling["rope_type"]; ok || saved.RopeScaling["type"] != "longrope" || len(saved.RopeScaling) != 3 {
		t.Errorf("saved rope_scaling %v, want the file's three keys (type, short_factor, long_factor)", saved.RopeScaling)
	}

	// A checkpoint that splits what Phi-3 fuses is not a Phi-3 checkpoint.
	llamaNames := strings.Replace(tinyPhi4, `"phi3"`, `"llama"`, 1)
	llamaNames = strings.Replace(llamaNames, `"partial_rotary_factor": 0.5,`, ``, 1)
	llamaNames = strings.Replace(llamaNames, `"short_factor": [1.0, 1.5, 3.0, 7.0], "long_factor": [1.0, 2.0, 6.0, 20.0]`,
		`"short_factor": [1, 1, 1, 1, 1, 1, 1, 1], "long_factor": [1, 1, 1, 1, 1, 1, 1, 1]`, 1)
	other := t.TempDir()
	if err := NewRandom(mustConfig(t, llamaNames), 3, 0.1).Save(ctx, openDir(t, other), "", SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, ConfigFile), []byte(tinyPhi4), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(ctx, openDir(t, other), ""); !errors.Is(err, ErrCheckpoint) || !strings.Contains(err.Error(), "q_proj") {
		t.Errorf("split projections under a phi3 config: %v", err)
	}
}
