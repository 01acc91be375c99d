package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
)

// Config is the part of a Hugging Face config.json the decoder needs.
// Field names and JSON tags are Hugging Face's.
type Config struct {
	ModelType         string       `json:"model_type"` // "llama", "mistral", "qwen2" or "qwen3"
	VocabSize         int          `json:"vocab_size"`
	HiddenSize        int          `json:"hidden_size"`
	IntermediateSize  int          `json:"intermediate_size"`
	NumHiddenLayers   int          `json:"num_hidden_layers"`
	NumAttentionHeads int          `json:"num_attention_heads"`
	NumKeyValueHeads  int          `json:"num_key_value_heads"` // 0: same as NumAttentionHeads
	HeadDim           int          `json:"head_dim,omitempty"`  // 0: HiddenSize / NumAttentionHeads
	RMSNormEps        float64      `json:"rms_norm_eps"`
	RopeTheta         float64      `json:"rope_theta"`
	RopeScaling       *RopeScaling `json:"rope_scaling,omitempty"`
	// RopeParameters is how transformers 5 writes rope_theta and
	// rope_scaling together; ParseConfig folds it into the two.
	RopeParameters        *RopeScaling `json:"rope_parameters,omitempty"`
	MaxPositionEmbeddings int          `json:"max_position_embeddings"`
	TieWordEmbeddings     bool         `json:"tie_word_embeddings"`
	AttentionBias         bool         `json:"attention_bias"` // llama: bias on q/k/v/o
	MLPBias               bool         `json:"mlp_bias"`
	HiddenAct             string       `json:"hidden_act"`
	BOSTokenID            any          `json:"bos_token_id,omitempty"`
	EOSTokenID            any          `json:"eos_token_id,omitempty"` // an id or a list of ids
	TorchDType            string       `json:"torch_dtype,omitempty"`
	// SlidingWindow (mistral): a query at index i sees the keys at indices
	// j with i-W < j <= i; null: every earlier key. Mistral's default, when
	// the field is absent, is 4096 (as in Hugging Face's MistralConfig).
	// Qwen2/Qwen3 configs carry it too but use it only with UseSlidingWindow.
	SlidingWindow *int `json:"sliding_window,omitempty"`
	// UseSlidingWindow (qwen2, qwen3) windows the layers from
	// max_window_layers on; not supported, so it must be false.
	UseSlidingWindow bool `json:"use_sliding_window,omitempty"`

	// Raw keeps every field of the file so that Save writes back what it read.
	Raw map[string]any `json:"-"`
}

// RopeScaling is config.json's rope_scaling; only Llama-3's "llama3" type
// (and "default") change the frequencies here.
type RopeScaling struct {
	RopeType                      string  `json:"rope_type"`
	Type                          string  `json:"type,omitempty"` // older spelling of rope_type
	Factor                        float64 `json:"factor"`
	LowFreqFactor                 float64 `json:"low_freq_factor"`
	HighFreqFactor                float64 `json:"high_freq_factor"`
	OriginalMaxPositionEmbeddings int     `json:"original_max_position_embeddings"`
	RopeTheta                     float64 `json:"rope_theta,omitempty"` // in rope_parameters only
}

// defaultMistralWindow is Hugging Face's MistralConfig default sliding_window.
const defaultMistralWindow = 4096

// ErrConfig marks an invalid or unsupported config.json.
var ErrConfig = errors.New("invalid model config")

// ParseConfig reads a config.json, fills Hugging Face's defaults and validates it.
// Its errors name the field, not the file: the caller knows the file.
func ParseConfig(data []byte) (*Config, error) {
	c := &Config{}
	if err := json.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if err := json.Unmarshal(data, &c.Raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if c.NumKeyValueHeads == 0 {
		c.NumKeyValueHeads = c.NumAttentionHeads
	}
	if c.HeadDim == 0 && c.NumAttentionHeads > 0 {
		c.HeadDim = c.HiddenSize / c.NumAttentionHeads
	}
	if p := c.RopeParameters; p != nil {
		if c.RopeTheta != 0 && p.RopeTheta != 0 && c.RopeTheta != p.RopeTheta {
			return nil, fmt.Errorf("%w: rope_parameters.rope_theta: %g, but rope_theta says %g", ErrConfig, p.RopeTheta, c.RopeTheta)
		}
		if p.RopeTheta != 0 {
			c.RopeTheta = p.RopeTheta
		}
		switch {
		case c.RopeScaling != nil && c.RopeScaling.kind() != p.kind():
			return nil, fmt.Errorf("%w: rope_parameters.rope_type: %q, but rope_scaling says %q", ErrConfig, p.kind(), c.RopeScaling.kind())
		case c.RopeScaling == nil && p.kind() != "default":
			c.RopeScaling = p
		}
	}
	if c.RopeTheta == 0 {
		c.RopeTheta = 10000
	}
	if c.RMSNormEps == 0 {
		c.RMSNormEps = 1e-6
	}
	if c.HiddenAct == "" {
		c.HiddenAct = "silu"
	}
	if _, set := c.Raw["sliding_window"]; !set && c.ModelType == "mistral" {
		w := defaultMistralWindow
		c.SlidingWindow = &w
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate names the first bad field.
func (c *Config) Validate() error {
	bad := func(field string, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
	}
	switch c.ModelType {
	case "llama", "mistral", "qwen2", "qwen3":
	default:
		return bad("model_type", "%q is not supported (llama, mistral, qwen2, qwen3)", c.ModelType)
	}
	switch c.ModelType {
	case "mistral":
		if c.SlidingWindow != nil && *c.SlidingWindow <= 0 {
			return bad("sliding_window", "must be positive or null, got %d", *c.SlidingWindow)
		}
		if c.AttentionBias {
			return bad("attention_bias", "mistral has no attention biases")
		}
		if c.MLPBias {
			return bad("mlp_bias", "mistral has no MLP biases")
		}
	case "qwen2", "qwen3":
		// Qwen windows only the layers from max_window_layers on (or those
		// layer_types names): not implemented, so refused rather than run unwindowed.
		if c.UseSlidingWindow {
			return bad("use_sliding_window", "sliding-window attention on some layers of %s is not supported", c.ModelType)
		}
		if types, _ := c.Raw["layer_types"].([]any); slices.Contains(types, any("sliding_attention")) {
			return bad("layer_types", "sliding_attention layers of %s are not supported", c.ModelType)
		}
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"vocab_size", c.VocabSize}, {"hidden_size", c.HiddenSize}, {"intermediate_size", c.IntermediateSize},
		{"num_hidden_layers", c.NumHiddenLayers}, {"num_attention_heads", c.NumAttentionHeads},
		{"num_key_value_heads", c.NumKeyValueHeads}, {"head_dim", c.HeadDim}} {
		if f.v <= 0 {
			return bad(f.name, "must be positive, got %d", f.v)
		}
	}
	if c.NumAttentionHeads%c.NumKeyValueHeads != 0 {
		return bad("num_key_value_heads", "%d does not divide num_attention_heads %d", c.NumKeyValueHeads, c.NumAttentionHeads)
	}
	if c.HeadDim%2 != 0 {
		return bad("head_dim", "must be even for rotary embeddings, got %d", c.HeadDim)
	}
	if c.HiddenAct != "silu" {
		return bad("hidden_act", "%q is not supported (silu)", c.HiddenAct)
	}
	if c.RMSNormEps <= 0 {
		return bad("rms_norm_eps", "must be positive, got %g", c.RMSNormEps)
	}
	if c.RopeTheta <= 0 {
		return bad("rope_theta", "must be positive, got %g", c.RopeTheta)
	}
	if s := c.RopeScaling; s != nil {
		switch s.kind() {
		case "default":
		case "llama3":
			if s.Factor <= 0 || s.LowFreqFactor <= 0 || s.HighFreqFactor <= s.LowFreqFactor || s.OriginalMaxPositionEmbeddings <= 0 {
				return bad("rope_scaling", "llama3 needs factor, low_freq_factor < high_freq_factor and original_max_position_embeddings, got %+v", *s)
			}
		default:
			return bad("rope_scaling.rope_type", "%q is not supported (default, llama3)", s.kind())
		}
	}
	return nil
}

func (s *RopeScaling) kind() string {
	if s.RopeType != "" {
		return s.RopeType
	}
	if s.Type != "" {
		return s.Type
	}
	return "default"
}

// Window is the sliding window W of attention (mistral's sliding_window), or
// 0 when every query sees all the keys at or before it.
func (c *Config) Window() int {
	if c.ModelType == "mistral" && c.SlidingWindow != nil {
		return *c.SlidingWindow
	}
	return 0
}

// QKVBias reports whether q/k/v projections carry a bias (always in Qwen2).
func (c *Config) QKVBias() bool { return c.ModelType == "qwen2" || c.AttentionBias }

// QKNorm reports whether queries and keys get a per-head RMSNorm (Qwen3).
func (c *Config) QKNorm() bool { return c.ModelType == "qwen3" }

// EOSTokenIDs returns eos_token_id as a list (it may be one id or several).
func (c *Config) EOSTokenIDs() []int {
	switch v := c.EOSTokenID.(type) {
	case float64:
		return []int{int(v)}
	case []any:
		var ids []int
		for _, x := range v {
			if f, ok := x.(float64); ok {
				ids = append(ids, int(f))
			}
		}
		return ids
	}
	return nil
}

// InvFreq returns the rotary inverse frequencies (head_dim/2 of them) as
// Hugging Face computes them in float32, with Llama-3 scaling applied.
func (c *Config) InvFreq() []float32 {
	half := c.HeadDim / 2
	inv := make([]float32, half)
	for i := range inv {
		exp := float32(2*i) / float32(c.HeadDim)
		inv[i] = float32(1.0 / math.Pow(c.RopeTheta, float64(exp)))
	}
	s := c.RopeScaling
	if s == nil || s.kind() != "llama3" {
		return inv
	}
	lowWavelen := float64(s.OriginalMaxPositionEmbeddings) / s.LowFreqFactor
	highWavelen := float64(s.OriginalMaxPositionEmbeddings) / s.HighFreqFactor
	for i, f := range inv {
		wavelen := 2 * math.Pi / float64(f)
		switch {
		case wavelen < highWavelen:
			// High frequencies stay.
		case wavelen > lowWavelen:
			inv[i] = float32(float64(f) / s.Factor)
		default:
			smooth := (float64(s.OriginalMaxPositionEmbeddings)/wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor)
			inv[i] = float32((1-smooth)*float64(f)/s.Factor + smooth*float64(f))
		}
	}
	return inv
}

// MarshalJSON writes the fields read from the file plus the typed ones.
func (c *Config) MarshalJSON() ([]byte, error) {
	type plain Config
	typed, err := json.Marshal((*plain)(c))
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	for k, v := range c.Raw {
		out[k] = v
	}
	var m map[string]any
	if err := json.Unmarshal(typed, &m); err != nil {
		return nil, err
	}
	for k, v := range m {
		out[k] = v
	}
	return json.MarshalIndent(out, "", "  ")
}
