package model

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
)

// TestMistralConfig: mistral parses with Llama's tensors and its window;
// a bad window, mistral biases and Qwen's per-layer windows are refused by name.
func TestMistralConfig(t *testing.T) {
	c := mustConfig(t, tinyMistral)
	if c.Window() != 4 || c.QKVBias() || c.QKNorm() || c.HeadDim != 16 || c.RopeTheta != 1e6 {
		t.Errorf("mistral config parsed as %+v (window %d)", c, c.Window())
	}
	llama := mustConfig(t, strings.Replace(tinyMistral, `"mistral"`, `"llama"`, 1))
	if llama.Window() != 0 {
		t.Errorf("llama got a sliding window %d", llama.Window())
	}
	if got, want := TensorNames(c), TensorNames(llama); !reflect.DeepEqual(got, want) {
		t.Errorf("mistral tensors differ from llama's:\n%v\n%v", got, want)
	}
	if w := mustConfig(t, strings.Replace(tinyMistral, `"sliding_window": 4`, `"sliding_window": null`, 1)).Window(); w != 0 {
		t.Errorf("sliding_window null: window %d, want 0 (full causal)", w)
	}
	if w := mustConfig(t, strings.Replace(tinyMistral, `"sliding_window": 4,`, ``, 1)).Window(); w != 4096 {
		t.Errorf("sliding_window absent: window %d, want MistralConfig's default 4096", w)
	}
	// Qwen2 configs carry sliding_window even when they do not use it.
	q := mustConfig(t, strings.Replace(tinyQwen2, `"eos_token_id"`, `"use_sliding_window": false, "sliding_window": 131072, "max_window_layers": 21, "eos_token_id"`, 1))
	if q.Window() != 0 {
		t.Errorf("qwen2 without use_sliding_window: window %d", q.Window())
	}
	for _, bad := range []struct{ base, old, new, field string }{
		{tinyMistral, `"sliding_window": 4`, `"sliding_window": 0`, "sliding_window"},
		{tinyMistral, `"sliding_window": 4`, `"sliding_window": -2`, "sliding_window"},
		{tinyMistral, `"sliding_window": 4`, `"sliding_window": "4"`, "sliding_window"},
		{tinyMistral, `"sliding_window": 4`, `"sliding_window": 4, "attention_bias": true`, "attention_bias"},
		{tinyMistral, `"sliding_window": 4`, `"sliding_window": 4, "mlp_bias": true`, "mlp_bias"},
		{tinyQwen2, `"eos_token_id"`, `"layer_types": ["full_attention", "sliding_attention"], "sliding_window": 8, "eos_token_id"`, "layer_types"},
		{tinyQwen2, `"eos_token_id"`, `"layer_types": ["full_attention", "full_attention", "local"], "sliding_window": 8, "eos_token_id"`, "layer_types"},
		{tinyQwen3, `"eos_token_id"`, `"layer_types": ["full_attention", "sliding_attention"], "sliding_window": null, "eos_token_id"`, "sliding_window"},
		{tinyGemma3, `"query_pre_attn_scalar": 24`, `"query_pre_attn_scalar": -1`, "query_pre_attn_scalar"},
		{tinyGemma2, `"attn_logit_softcapping": 5.0`, `"attn_logit_softcapping": -1`, "attn_logit_softcapping"},
		{tinyGemma3, `"gelu_pytorch_tanh"`, `"gelu"`, "hidden_activation"},
		{tinyGemma3, `"gemma3_text"`, `"gemma3"`, "text_config"},
	} {
		js := strings.Replace(bad.base, bad.old, bad.new, 1)
		if js == bad.base {
			t.Fatalf("edit %s did not apply", bad.new)
		}
		_, err := ParseConfig([]byte(js))
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), bad.field) {
			t.Errorf("%s: error %v does not name %s", bad.new, err, bad.field)
		}
	}
}

// TestLayerWindows: which layers are windowed, as Hugging Face decides it
// from layer_types or from each model's older fields.
func TestLayerWindows(t *testing.T) {
	windows := func(js string) []int {
		c := mustConfig(t, js)
		var w []int
		for i := range c.NumHiddenLayers {
			w = append(w, c.LayerWindow(i))
		}
		return w
	}
	six := func(js string) string {
		return strings.Replace(js, `"num_hidden_layers": 3`, `"num_hidden_layers": 6`, 1)
	}
	for _, tc := range []struct {
		name, js string
		want     []int
	}{
		{"mistral", tinyMistral, []int{4, 4, 4}},
		{"llama", tinyLlama, []int{0, 0, 0}},
		{"qwen2 unwindowed", strings.Replace(tinyQwen2, `"eos_token_id"`, `"sliding_window": 8, "max_window_layers": 1, "eos_token_id"`, 1), []int{0, 0, 0}},
		{"qwen2 from max_window_layers", strings.Replace(tinyQwen2, `"eos_token_id"`, `"use_sliding_window": true, "sliding_window": 8, "max_window_layers": 1, "eos_token_id"`, 1), []int{0, 8, 8}},
		{"qwen2 layer_types", strings.Replace(tinyQwen2, `"eos_token_id"`, `"layer_types": ["sliding_attention", "full_attention", "sliding_attention"], "sliding_window": 8, "eos_token_id"`, 1), []int{8, 0, 8}},
		{"gemma2", six(tinyGemma2), []int{4, 0, 4, 0, 4, 0}},
		{"gemma3 pattern 3", six(tinyGemma3), []int{4, 4, 0, 4, 4, 0}},
		{"gemma3 default pattern 6", strings.Replace(six(tinyGemma3), `"sliding_window_pattern": 3, `, ``, 1), []int{4, 4, 4, 4, 4, 0}},
		{"gemma3 layer_types", strings.Replace(tinyGemma3, `"sliding_window": 4`, `"sliding_window": 4, "layer_types": ["full_attention", "sliding_attention", "full_attention"]`, 1), []int{0, 4, 0}},
	} {
		if got := windows(tc.js); !slices.Equal(got, tc.want) {
			t.Errorf("%s: layer windows %v, want %v", tc.name, got, tc.want)
		}
	}
	// Gemma 3 rotates its windowed layers with rope_local_base_freq and
	// its global ones with rope_theta and rope_scaling; transformers 5
	// writes the two as rope_parameters per layer type.
	c := mustConfig(t, tinyGemma3)
	local, global := c.InvFreq(0), c.InvFreq(2)
	if local[1] != float32(1/math.Pow(10000, 2.0/16)) || global[1] != float32(float64(float32(1/math.Pow(1e6, 2.0/16)))/8) {
		t.Errorf("gemma3 inverse frequencies: local %v, global %v", local, global)
	}
	v5 := strings.Replace(strings.Replace(strings.Replace(tinyGemma3, `"rope_theta": 1000000.0,`, "", 1), `"rope_local_base_freq": 10000.0,`, "", 1),
		`"rope_scaling": {"rope_type": "linear", "factor": 8.0}`,
		`"rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0}, "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}`, 1)
	c5 := mustConfig(t, v5)
	if !slices.Equal(c5.InvFreq(0), local) || !slices.Equal(c5.InvFreq(2), global) {
		t.Errorf("gemma3 rope_parameters per layer type: local %v, global %v", c5.InvFreq(0), c5.InvFreq(2))
	}
}

// TestSlidingWindowMatters: the window changes exactly the logits of the
// positions whose causal prefix is longer than it, in Forward and Hidden.
func TestSlidingWindowMatters(t *testing.T) {
	b := testBackend(t)
	m := NewRandom(mustConfig(t, tinyMistral), 5, 0.15)
	full := *m.Config
	full.SlidingWindow = nil
	prompt := [][]int{{5, 17, 33, 2, 9, 41, 60, 11, 7, 3}}
	windowed, err := Logits(b, m, prompt)
	if err != nil {
		t.Fatal(err)
	}
	causal, err := Logits(b, &Model{Config: &full, Ctx: m.Ctx}, prompt)
	if err != nil {
		t.Fatal(err)
	}
	// Hidden (embeddings, PRM scores) is windowed as Forward is.
	n := len(prompt[0])
	tokens, positions := make([]int32, n), make([]int32, n)
	for j, tok := range prompt[0] {
		tokens[j], positions[j] = int32(tok), int32(j)
	}
	out := mlctx.MustExecOnce(b, m.Ctx, func(ctx *mlctx.Context, tok, pos, val *Node) *Node {
		return LMHead(ctx, m.Config, Hidden(ctx, m.Config, tok, pos, val))
	}, tensors.FromFlatDataAndDimensions(tokens, 1, n), tensors.FromFlatDataAndDimensions(positions, 1, n),
		tensors.FromFlatDataAndDimensions(slices.Repeat([]bool{true}, n), 1, n))
	hidden := tensors.MustCopyFlatData[float32](out)
	v := m.Config.VocabSize
	w := m.Config.Window()
	for j := range prompt[0] {
		if d := maxAbsDiff(hidden[j*v:(j+1)*v], windowed[0][j]); d > 1e-5 {
			t.Errorf("position %d: lm_head(Hidden) differs from Forward by %.2e", j, d)
		}
		d := maxAbsDiff(windowed[0][j], causal[0][j])
		if j < w && d != 0 {
			t.Errorf("position %d (inside the window): logits differ by %.2e", j, d)
		}
		if j >= w && d < 1e-4 {
			t.Errorf("position %d (beyond the window): logits unchanged by the window (%.2e)", j, d)
		}
	}
}

// TestSlidingWindowSampledGeneration: sampled continuations that run well
// past the window, decoded with the KV cache, are what replaying the same
// draws over PyTorch's full recompute of every prefix gives.
func TestSlidingWindowSampledGeneration(t *testing.T) {
	cfg := mustConfig(t, tinyMistral)
	dir := t.TempDir()
	if err := NewRandom(cfg, 11, 0.15).Save(context.Background(), openDir(t, dir), "", SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	m, err := Load(context.Background(), openDir(t, dir), "")
	if err != nil {
		t.Fatal(err)
	}
	gen, err := NewGenerator(testBackend(t), m)
	if err != nil {
		t.Fatal(err)
	}
	s := Sampling{Temperature: 1, MaxNewTokens: 14}
	reqs := []Request{{Prompt: []int{5, 17, 33, 2, 9, 41}, Seed: 3}, {Prompt: []int{12, 4}, Seed: 8}}
	res, err := gen.Generate(reqs, s)
	if err != nil {
		t.Fatal(err)
	}
	var seqs [][]int
	for i, r := range reqs {
		seqs = append(seqs, append(append([]int{}, r.Prompt...), res[i].Tokens...))
	}
	ref := runReference(t, dir, seqs, 0)
	for i, r := range reqs {
		rng := requestRNG(r.Seed)
		for step, tok := range res[i].Tokens {
			row := ref.Logits[i][len(r.Prompt)+step-1]
			logits := make([]float32, len(row))
			for k, x := range row {
				logits[k] = float32(x)
			}
			if want := pick(logits, s, rng); tok != want {
				t.Fatalf("request %d step %d (position %d, window %d): cached decode drew %d, the full recompute %d; got %v",
					i, step, len(r.Prompt)+step, cfg.Window(), tok, want, res[i].Tokens)
			}
		}
	}
}

// TestMistralSaveLoad: config.json keeps sliding_window (a number or null)
// through Save and Load.
func TestMistralSaveLoad(t *testing.T) {
	for _, tc := range []struct {
		config string
		want   any
	}{{tinyMistral, 4.0}, {strings.Replace(tinyMistral, `"sliding_window": 4`, `"sliding_window": null`, 1), nil}} {
		dir := t.TempDir()
		orig := NewRandom(mustConfig(t, tc.config), 1, 0.1)
		if err := orig.Save(context.Background(), openDir(t, dir), "ckpt", SaveOptions{}); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(filepath.Join(dir, "ckpt", ConfigFile))
		if err != nil {
			t.Fatal(err)
		}
		var fields map[string]any
		if err := json.Unmarshal(raw, &fields); err != nil {
			t.Fatal(err)
		}
		if got, ok := fields["sliding_window"]; !ok || got != tc.want || fields["model_type"] != "mistral" {
			t.Errorf("config.json has sliding_window %v (present %v), model_type %v; want %v", got, ok, fields["model_type"], tc.want)
		}
		back, err := Load(context.Background(), openDir(t, dir), "ckpt")
		if err != nil {
			t.Fatal(err)
		}
		if back.Config.Window() != orig.Config.Window() {
			t.Errorf("window %d after the round trip, was %d", back.Config.Window(), orig.Config.Window())
		}
		sameWeights(t, back, orig, "in the round trip")
	}
}
