package model

import (
	"strings"
	"testing"
)

// TestSmolLM3Config: SmolLM3Config's defaults (rope_theta 2e6, a tied
// lm_head, every fourth layer NoPE, the NoPE layers windowed with
// use_sliding_window), a listed no_rope_layers, and its mistakes.
func TestSmolLM3Config(t *testing.T) {
	c := mustConfig(t, tinySmolLM3)
	if c.RopeTheta != 2e6 || !c.TieWordEmbeddings {
		t.Errorf("defaults: rope_theta %g, tied %v; want 2e6, true", c.RopeTheta, c.TieWordEmbeddings)
	}
	for i, want := range []struct {
		rope   bool
		window int
	}{{true, 0}, {true, 0}, {true, 0}, {false, 4}} {
		if c.LayerRope(i) != want.rope || c.LayerWindow(i) != want.window {
			t.Errorf("layer %d: rope %v window %d, want %v %d", i, c.LayerRope(i), c.LayerWindow(i), want.rope, want.window)
		}
	}
	listed := mustConfig(t, tinySmolLM3Listed)
	if listed.LayerRope(0) || !listed.LayerRope(1) || !listed.LayerRope(2) || listed.Window() != 0 || listed.TieWordEmbeddings {
		t.Errorf("no_rope_layers [0, 1, 1], untied: %+v", listed)
	}
	if llama := mustConfig(t, tinyLlama); !llama.LayerRope(3) || llama.TieWordEmbeddings {
		t.Errorf("llama: every layer rotates and an absent tie_word_embeddings is false")
	}
	gemma := mustConfig(t, strings.Replace(tinyGemma3, `"tie_word_embeddings": true,`, ``, 1))
	if !gemma.TieWordEmbeddings {
		t.Errorf("gemma3_text without tie_word_embeddings: untied, want Gemma3TextConfig's default (tied)")
	}
	refuses(t, []badEdit{
		{tinySmolLM3Listed, `"no_rope_layers": [0, 1, 1]`, `"no_rope_layers": [0, 1]`, "no_rope_layers: 2 entries for 3 layers"},
		{tinySmolLM3Listed, `"no_rope_layers": [0, 1, 1]`, `"no_rope_layers": [0, 2, 1]`, "no_rope_layers: entry 1"},
		{tinyLlama, `"hidden_act": "silu"`, `"hidden_act": "silu", "no_rope_layers": [1, 1, 0]`, "no_rope_layers: only smollm3"},
	})
}

// TestOlmo2Tensors: OLMo 2's layers have no input norm, a norm after the
// MLP, and q/k norms as wide as all the heads' projections.
func TestOlmo2Tensors(t *testing.T) {
	c := mustConfig(t, tinyOlmo2)
	shapes := map[string][]int{}
	for _, h := range TensorNames(c) {
		shapes[h.Name] = h.Shape
	}
	p := "model.layers.1."
	if _, ok := shapes[p+"input_layernorm.weight"]; ok {
		t.Errorf("olmo2 has an input_layernorm")
	}
	for name, want := range map[string]int{"self_attn.q_norm.weight": 4 * 12, "self_attn.k_norm.weight": 2 * 12,
		"post_attention_layernorm.weight": 48, "post_feedforward_layernorm.weight": 48} {
		if s := shapes[p+name]; len(s) != 1 || s[0] != want {
			t.Errorf("%s: shape %v, want [%d]", name, s, want)
		}
	}
}

// TestGraniteConfig: Granite's multipliers, 1 when absent (the attention
// scale too: GraniteConfig's attention_multiplier replaces head_dim^-1/2),
// and refused on other models or when not positive.
func TestGraniteConfig(t *testing.T) {
	if c := mustConfig(t, tinyGranite); c.AttentionScale() != 0.0078125 {
		t.Errorf("attention scale %g, want attention_multiplier 0.0078125", c.AttentionScale())
	}
	bare := strings.Replace(tinyGranite, `"embedding_multiplier": 12.0, "attention_multiplier": 0.0078125, "residual_multiplier": 0.22,
		"logits_scaling": 8.0, `, ``, 1)
	if bare == tinyGranite {
		t.Fatal("multipliers not removed")
	}
	if c := mustConfig(t, bare); c.AttentionScale() != 1 {
		t.Errorf("granite without attention_multiplier: scale %g, want 1", c.AttentionScale())
	}
	refuses(t, []badEdit{
		{tinyGranite, `"residual_multiplier": 0.22`, `"residual_multiplier": 0`, "residual_multiplier: must be positive"},
		{tinyGranite, `"logits_scaling": 8.0`, `"logits_scaling": -1`, "logits_scaling: must be positive"},
		{tinyLlama, `"hidden_act": "silu"`, `"hidden_act": "silu", "embedding_multiplier": 12`, "embedding_multiplier: only granite"},
	})
}
