package model

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/backends"

	"github.com/statjob/statjob/internal/torchref"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/train/backend"
)

// openDir opens a local folder as a storage.Store.
func openDir(t testing.TB, dir string) storage.Store {
	t.Helper()
	s, err := storage.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testBackend(t testing.TB) backends.Backend {
	t.Helper()
	b, err := backend.New("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Finalize)
	return b
}

func mustConfig(t testing.TB, js string) *Config {
	t.Helper()
	c, err := ParseConfig([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Tiny configs used by the tests: several layers, GQA, and each model's quirks.
const (
	tinyLlama = `{"model_type": "llama", "vocab_size": 96, "hidden_size": 64, "intermediate_size": 112,
		"num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
		"rope_theta": 500000.0, "max_position_embeddings": 131072, "tie_word_embeddings": false,
		"rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
		"original_max_position_embeddings": 8192}, "hidden_act": "silu", "eos_token_id": [1, 2]}`
	tinyQwen2 = `{"model_type": "qwen2", "vocab_size": 80, "hidden_size": 48, "intermediate_size": 96,
		"num_hidden_layers": 3, "num_attention_heads": 6, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
		"rope_theta": 1000000.0, "max_position_embeddings": 32768, "tie_word_embeddings": true,
		"hidden_act": "silu", "eos_token_id": 3}`
	// Qwen3: per-head q/k RMSNorm, head_dim not hidden_size / heads.
	tinyQwen3 = `{"model_type": "qwen3", "vocab_size": 72, "hidden_size": 32, "intermediate_size": 64,
		"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 24,
		"rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "max_position_embeddings": 40960,
		"tie_word_embeddings": true, "attention_bias": false, "hidden_act": "silu", "eos_token_id": 3}`
	// Mistral: Llama's layout with a sliding window shorter than the test
	// prompts and continuations, so that the window matters.
	tinyMistral = `{"model_type": "mistral", "vocab_size": 88, "hidden_size": 64, "intermediate_size": 96,
		"num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
		"rope_theta": 1000000.0, "max_position_embeddings": 32768, "tie_word_embeddings": false,
		"sliding_window": 4, "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2}`
	// Qwen2 with use_sliding_window: layers 1 and 2 windowed (4), layer 0 not.
	tinyQwen2Windowed = `{"model_type": "qwen2", "vocab_size": 80, "hidden_size": 48, "intermediate_size": 96,
		"num_hidden_layers": 3, "num_attention_heads": 6, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
		"rope_theta": 1000000.0, "max_position_embeddings": 32768, "tie_word_embeddings": true,
		"use_sliding_window": true, "sliding_window": 4, "max_window_layers": 1, "hidden_act": "silu", "eos_token_id": 3}`
	// Gemma 3: four norms a layer scaling by 1 + weight, q/k norms, GeGLU,
	// a scaled embedding, query_pre_attn_scalar, windowed layers 0 and 1
	// (pattern 3) rotating at rope_local_base_freq, and a linearly scaled
	// global rope on layer 2.
	tinyGemma3 = `{"model_type": "gemma3_text", "vocab_size": 80, "hidden_size": 48, "intermediate_size": 96,
		"num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
		"rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
		"rope_scaling": {"rope_type": "linear", "factor": 8.0}, "query_pre_attn_scalar": 24,
		"sliding_window": 4, "sliding_window_pattern": 3, "max_position_embeddings": 32768,
		"tie_word_embeddings": true, "hidden_activation": "gelu_pytorch_tanh",
		"final_logit_softcapping": null, "attn_logit_softcapping": null, "bos_token_id": 2, "eos_token_id": [1, 6]}`
	// Gemma 2: no q/k norms, soft-capped attention scores and logits,
	// every other layer windowed from the first.
	tinyGemma2 = `{"model_type": "gemma2", "vocab_size": 80, "hidden_size": 48, "intermediate_size": 96,
		"num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
		"rms_norm_eps": 1e-6, "rope_theta": 10000.0, "query_pre_attn_scalar": 16,
		"sliding_window": 4, "max_position_embeddings": 8192, "tie_word_embeddings": true,
		"hidden_activation": "gelu_pytorch_tanh", "hidden_act": "gelu_pytorch_tanh",
		"final_logit_softcapping": 3.0, "attn_logit_softcapping": 5.0, "bos_token_id": 2, "eos_token_id": 1}`
	// Phi-3 mini 4k: fused qkv_proj and gate_up_proj in the checkpoint, a
	// sliding window on every layer.
	tinyPhi3 = `{"model_type": "phi3", "vocab_size": 90, "hidden_size": 64, "intermediate_size": 80,
		"num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
		"rope_theta": 10000.0, "rope_scaling": null, "max_position_embeddings": 4096,
		"original_max_position_embeddings": 4096, "sliding_window": 4, "tie_word_embeddings": false,
		"hidden_act": "silu", "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attention_dropout": 0.0,
		"bos_token_id": 1, "eos_token_id": 32000}`
	// Phi-4 mini: a partial rotary (8 of 16 dimensions) and longrope, whose
	// original context (12) the longest prompt passes, with a tied lm_head.
	tinyPhi4 = `{"model_type": "phi3", "vocab_size": 90, "hidden_size": 64, "intermediate_size": 80,
		"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
		"rope_theta": 10000.0, "partial_rotary_factor": 0.5, "max_position_embeddings": 48,
		"original_max_position_embeddings": 12, "sliding_window": 262144, "tie_word_embeddings": true,
		"rope_scaling": {"type": "longrope", "short_factor": [1.0, 1.5, 3.0, 7.0], "long_factor": [1.0, 2.0, 6.0, 20.0]},
		"hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2}`
	// SmolLM3 with SmolLM3Config's defaults: rope_theta 2e6, a tied
	// lm_head, every fourth layer (3) without rotary positions (NoPE) and,
	// with use_sliding_window, windowed.
	tinySmolLM3 = `{"model_type": "smollm3", "vocab_size": 88, "hidden_size": 48, "intermediate_size": 96,
		"num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
		"max_position_embeddings": 65536, "use_sliding_window": true, "sliding_window": 4,
		"hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2}`
	// SmolLM3 with its NoPE layers listed (the first), untied, no window.
	tinySmolLM3Listed = `{"model_type": "smollm3", "vocab_size": 88, "hidden_size": 48, "intermediate_size": 96,
		"num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
		"rope_theta": 5000000.0, "max_position_embeddings": 65536, "no_rope_layers": [0, 1, 1],
		"tie_word_embeddings": false, "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2}`
	// OLMo 2: norms after attention and the MLP (none before), q/k norms
	// over all heads together.
	tinyOlmo2 = `{"model_type": "olmo2", "vocab_size": 88, "hidden_size": 48, "intermediate_size": 96,
		"num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
		"rope_theta": 500000.0, "max_position_embeddings": 4096, "attention_bias": false,
		"tie_word_embeddings": false, "hidden_act": "silu", "bos_token_id": null, "eos_token_id": 2}`
	// Granite 3: Llama's layout with its four multipliers and biases.
	tinyGranite = `{"model_type": "granite", "vocab_size": 88, "hidden_size": 48, "intermediate_size": 96,
		"num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
		"rope_theta": 10000000.0, "max_position_embeddings": 131072, "attention_bias": true, "mlp_bias": false,
		"embedding_multiplier": 12.0, "attention_multiplier": 0.0078125, "residual_multiplier": 0.22,
		"logits_scaling": 8.0, "tie_word_embeddings": true, "hidden_act": "silu", "bos_token_id": 0, "eos_token_id": 0}`
)

type reference struct {
	Logits  [][][]float64 `json:"logits"`
	Greedy  [][]int       `json:"greedy"`
	Margins [][]float64   `json:"margins"`
}

// runReference runs testdata/reference.py on the checkpoint in dir.
func runReference(t testing.TB, dir string, prompts [][]int, steps int) reference {
	t.Helper()
	py := torchref.Python(t)
	req, _ := json.Marshal(map[string]any{"prompts": prompts, "greedy_steps": steps})
	reqPath, outPath := filepath.Join(dir, "request.json"), filepath.Join(dir, "reference.json")
	if err := os.WriteFile(reqPath, req, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, "testdata/reference.py", dir, reqPath, outPath).CombinedOutput()
	if err != nil {
		t.Fatalf("reference.py: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	var ref reference
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	return ref
}

// sameWeights fails unless every weight of got equals want's, bit for bit
// (as float32); how names the way got came ("in the round trip").
func sameWeights(t testing.TB, got, want *Model, how string) {
	t.Helper()
	for _, h := range TensorNames(want.Config) {
		scope, name := scopeOf(h.Name)
		w, err := Float32Data(want.Ctx.GetVariableByScopeAndName(scope, name).MustValue())
		if err != nil {
			t.Fatal(err)
		}
		g, err := Float32Data(got.Ctx.GetVariableByScopeAndName(scope, name).MustValue())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(g, w) {
			t.Fatalf("%s changed %s", h.Name, how)
		}
	}
}

// badEdit makes a valid config invalid with one edit (from → to); the
// error must be ErrConfig and hold want (the field and what is wrong).
type badEdit struct{ config, from, to, want string }

// refuses checks every badEdit.
func refuses(t *testing.T, edits []badEdit) {
	t.Helper()
	for _, e := range edits {
		js := strings.Replace(e.config, e.from, e.to, 1)
		if js == e.config {
			t.Fatalf("edit %q not applied", e.from)
		}
		if _, err := ParseConfig([]byte(js)); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), e.want) {
			t.Errorf("%s: error %v, want one naming %q", e.to, err, e.want)
		}
	}
}
