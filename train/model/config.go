package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
)

// Config is the part of a Hugging Face config.json the decoder needs.
// Field names and JSON tags are Hugging Face's.
type Config struct {
	ModelType         string       `json:"model_type"` // "llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "phi3", "smollm3", "olmo2" or "granite"
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
	// OriginalMaxPositionEmbeddings (phi3) is the pre-training context:
	// longrope switches from its short to its long factors past it, and
	// max_position_embeddings / this sets its attention factor.
	OriginalMaxPositionEmbeddings int `json:"original_max_position_embeddings,omitempty"`
	// PartialRotaryFactor (phi3): only the first head_dim·factor dimensions
	// of each head rotate; the rest pass through (0: 1, every dimension).
	PartialRotaryFactor float64 `json:"partial_rotary_factor,omitempty"`
	TieWordEmbeddings   bool    `json:"tie_word_embeddings"`
	AttentionBias       bool    `json:"attention_bias"` // llama: bias on q/k/v/o
	MLPBias             bool    `json:"mlp_bias"`
	HiddenAct           string  `json:"hidden_act,omitempty"`
	// HiddenActivation is Gemma's name for the MLP's activation; it wins
	// over hidden_act there (gelu_pytorch_tanh when neither is set).
	HiddenActivation string `json:"hidden_activation,omitempty"`
	BOSTokenID       any    `json:"bos_token_id,omitempty"`
	EOSTokenID       any    `json:"eos_token_id,omitempty"` // an id or a list of ids
	TorchDType       string `json:"torch_dtype,omitempty"`
	// SlidingWindow (mistral): a query at index i sees the keys at indices
	// j with i-W < j <= i; null: every earlier key. Mistral's default, when
	// the field is absent, is 4096 (as in Hugging Face's MistralConfig).
	// Qwen2/Qwen3 configs carry it too but use it only with UseSlidingWindow.
	SlidingWindow *int `json:"sliding_window,omitempty"`
	// UseSlidingWindow (qwen2, qwen3) windows the layers from
	// max_window_layers on; not supported, so it must be false.
	UseSlidingWindow bool `json:"use_sliding_window,omitempty"`
	// MaxWindowLayers (qwen2, qwen3): with use_sliding_window, the layers
	// from this index on are windowed.
	MaxWindowLayers int `json:"max_window_layers,omitempty"`
	// LayerTypes names each layer's attention, "full_attention" or
	// "sliding_attention" (sliding_window wide), as transformers writes it
	// since 4.53. Without it each model's older fields decide
	// (LayerWindow).
	LayerTypes []string `json:"layer_types,omitempty"`
	// SlidingWindowPattern (gemma3_text, older configs): every
	// pattern-th layer is global, the others windowed (default 6).
	SlidingWindowPattern int `json:"sliding_window_pattern,omitempty"`

	// NoRopeLayers (smollm3) has a 1 for each layer that rotates its
	// queries and keys and a 0 for a layer without positions (NoPE);
	// absent, every no_rope_layer_interval-th layer (default 4) is NoPE.
	NoRopeLayers        []int `json:"no_rope_layers,omitempty"`
	NoRopeLayerInterval int   `json:"no_rope_layer_interval,omitempty"`

	// Granite's multipliers (each 1 when absent, as in GraniteConfig): the
	// embedding is scaled by embedding_multiplier, attention scores by
	// attention_multiplier (in place of head_dim^-1/2), each block's output
	// by residual_multiplier before it is added, and the logits divided by
	// logits_scaling.
	EmbeddingMultiplier *float64 `json:"embedding_multiplier,omitempty"`
	AttentionMultiplier *float64 `json:"attention_multiplier,omitempty"`
	ResidualMultiplier  *float64 `json:"residual_multiplier,omitempty"`
	LogitsScaling       *float64 `json:"logits_scaling,omitempty"`

	// Gemma: attention scores are scaled by query_pre_attn_scalar^-1/2
	// (not head_dim^-1/2); gemma3_text's windowed layers rotate with
	// rope_local_base_freq and no scaling; gemma2 soft-caps the attention
	// scores and the logits (cap·tanh(x/cap)).
	QueryPreAttnScalar    float64  `json:"query_pre_attn_scalar,omitempty"`
	RopeLocalBaseFreq     float64  `json:"rope_local_base_freq,omitempty"`
	AttnLogitSoftcapping  *float64 `json:"attn_logit_softcapping,omitempty"`
	FinalLogitSoftcapping *float64 `json:"final_logit_softcapping,omitempty"`

	// Raw keeps every field of the file so that Save writes back what it read.
	Raw map[string]any `json:"-"`
	// fromImageText marks a Gemma 3 image-and-text checkpoint read for its
	// language model (textOfImageText).
	fromImageText bool
}

// RopeScaling is config.json's rope_scaling; Llama-3's "llama3", "linear"
// (every frequency divided by factor) and Phi-3's "longrope" (every
// frequency divided by its own short or long factor, cos and sin scaled by
// an attention factor) change the frequencies here.
type RopeScaling struct {
	// Every field is omitted when empty, so that a saved config.json
	// spells rope_scaling as it was read ("type" stays "type").
	RopeType                      string  `json:"rope_type,omitempty"`
	Type                          string  `json:"type,omitempty"` // older spelling of rope_type
	Factor                        float64 `json:"factor,omitempty"`
	LowFreqFactor                 float64 `json:"low_freq_factor,omitempty"`
	HighFreqFactor                float64 `json:"high_freq_factor,omitempty"`
	OriginalMaxPositionEmbeddings int     `json:"original_max_position_embeddings,omitempty"`
	RopeTheta                     float64 `json:"rope_theta,omitempty"` // in rope_parameters only
	// longrope: one factor per rotated frequency, for sequences up to and
	// past the original context; attention_factor overrides the default
	// sqrt(1 + ln(factor) / ln(original context)).
	ShortFactor     []float64 `json:"short_factor,omitempty"`
	LongFactor      []float64 `json:"long_factor,omitempty"`
	AttentionFactor *float64  `json:"attention_factor,omitempty"`
}

// defaultMistralWindow is Hugging Face's MistralConfig default sliding_window.
const defaultMistralWindow = 4096

// ErrConfig marks an invalid or unsupported config.json.
var ErrConfig = errors.New("invalid model config")

// ParseConfig reads a config.json, fills Hugging Face's defaults and validates it.
// Its errors name the field, not the file: the caller knows the file.
func ParseConfig(data []byte) (*Config, error) {
	data, imageText, err := textOfImageText(data)
	if err != nil {
		return nil, err
	}
	c := &Config{fromImageText: imageText}
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
	if err := c.splitRopeParameters(data); err != nil {
		return nil, err
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
		if c.ModelType == "smollm3" { // SmolLM3Config's default_theta
			c.RopeTheta = 2e6
		}
	}
	if _, set := c.Raw["tie_word_embeddings"]; !set {
		// The config classes whose default ties the lm_head to the embedding.
		c.TieWordEmbeddings = c.Gemma() || c.ModelType == "smollm3"
	}
	if c.RMSNormEps == 0 {
		c.RMSNormEps = 1e-6
	}
	if c.HiddenAct == "" && !c.Gemma() {
		c.HiddenAct = "silu"
	}
	if _, set := c.Raw["sliding_window"]; !set {
		switch c.ModelType {
		case "mistral":
			w := defaultMistralWindow
			c.SlidingWindow = &w
		case "gemma2", "gemma3_text": // Gemma2Config's and Gemma3TextConfig's default
			w := 4096
			c.SlidingWindow = &w
		}
	}
	if c.Gemma() && c.QueryPreAttnScalar == 0 {
		c.QueryPreAttnScalar = 256
	}
	if c.ModelType == "gemma3_text" && c.RopeLocalBaseFreq == 0 {
		c.RopeLocalBaseFreq = 10000
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
	case "llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "phi3", "smollm3", "olmo2", "granite":
	default:
		return bad("model_type", "%q is not supported (llama, mistral, qwen2, qwen3, gemma2, gemma3_text, phi3, smollm3, olmo2, granite)", c.ModelType)
	}
	for _, f := range []struct {
		name string
		v    *float64
	}{{"embedding_multiplier", c.EmbeddingMultiplier}, {"attention_multiplier", c.AttentionMultiplier},
		{"residual_multiplier", c.ResidualMultiplier}, {"logits_scaling", c.LogitsScaling}} {
		switch {
		case f.v == nil:
		case c.ModelType != "granite":
			return bad(f.name, "only granite scales by it here")
		case !(*f.v > 0):
			return bad(f.name, "must be positive, got %g", *f.v)
		}
	}
	if c.NoRopeLayers != nil || c.NoRopeLayerInterval != 0 {
		if c.ModelType != "smollm3" {
			return bad("no_rope_layers", "only smollm3 has layers without rotary positions here")
		}
		if c.NoRopeLayers != nil && len(c.NoRopeLayers) < c.NumHiddenLayers {
			return bad("no_rope_layers", "%d entries for %d layers", len(c.NoRopeLayers), c.NumHiddenLayers)
		}
		for i, v := range c.NoRopeLayers {
			if v != 0 && v != 1 {
				return bad("no_rope_layers", "entry %d: %d, want 1 (rotary) or 0 (none)", i, v)
			}
		}
		if c.NoRopeLayerInterval < 0 {
			return bad("no_rope_layer_interval", "must be positive, got %d", c.NoRopeLayerInterval)
		}
	}
	switch c.ModelType {
	case "mistral", "phi3":
		if c.SlidingWindow != nil && *c.SlidingWindow <= 0 {
			return bad("sliding_window", "must be positive or null, got %d", *c.SlidingWindow)
		}
		if c.AttentionBias {
			return bad("attention_bias", "%s has no attention biases", c.ModelType)
		}
		if c.MLPBias {
			return bad("mlp_bias", "%s has no MLP biases", c.ModelType)
		}
	case "gemma2", "gemma3_text":
		if c.QueryPreAttnScalar <= 0 {
			return bad("query_pre_attn_scalar", "must be positive, got %g", c.QueryPreAttnScalar)
		}
		for _, f := range []struct {
			name string
			v    *float64
		}{{"attn_logit_softcapping", c.AttnLogitSoftcapping}, {"final_logit_softcapping", c.FinalLogitSoftcapping}} {
			if f.v != nil && *f.v <= 0 {
				return bad(f.name, "must be positive or null, got %g", *f.v)
			}
		}
		if c.SlidingWindowPattern < 0 {
			return bad("sliding_window_pattern", "must be positive, got %d", c.SlidingWindowPattern)
		}
		if c.ModelType == "gemma3_text" && c.RopeLocalBaseFreq <= 0 {
			return bad("rope_local_base_freq", "must be positive, got %g", c.RopeLocalBaseFreq)
		}
	}
	if c.LayerTypes != nil && len(c.LayerTypes) != c.NumHiddenLayers {
		return bad("layer_types", "%d entries for %d layers", len(c.LayerTypes), c.NumHiddenLayers)
	}
	for i, lt := range c.LayerTypes {
		if lt != "full_attention" && lt != "sliding_attention" {
			return bad("layer_types", "entry %d: %q, want full_attention or sliding_attention", i, lt)
		}
	}
	windowed := false
	for i := range c.NumHiddenLayers {
		windowed = windowed || c.slidingLayer(i)
	}
	if windowed && (c.SlidingWindow == nil || *c.SlidingWindow <= 0) {
		return bad("sliding_window", "windowed layers need a positive sliding_window")
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
	if f := c.PartialRotaryFactor; f < 0 || f > 1 || math.IsNaN(f) {
		return bad("partial_rotary_factor", "%g, want in (0, 1]", f)
	}
	if f := c.PartialRotaryFactor; f != 0 && f != 1 && c.ModelType != "phi3" {
		return bad("partial_rotary_factor", "%g: only phi3 rotates part of each head here", f)
	}
	if rd := c.RotaryDim(); rd <= 0 || rd%2 != 0 {
		return bad("head_dim", "rotates %d dimensions (head_dim %d × partial_rotary_factor), want an even number > 0", rd, c.HeadDim)
	}
	if field, act := c.activation(); act != "silu" && act != "gelu_pytorch_tanh" {
		return bad(field, "%q is not supported (silu, gelu_pytorch_tanh)", act)
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
		case "linear":
			if s.Factor <= 0 {
				return bad("rope_scaling", "linear needs a positive factor, got %+v", *s)
			}
		case "llama3":
			if s.Factor <= 0 || s.LowFreqFactor <= 0 || s.HighFreqFactor <= s.LowFreqFactor || s.OriginalMaxPositionEmbeddings <= 0 {
				return bad("rope_scaling", "llama3 needs factor, low_freq_factor < high_freq_factor and original_max_position_embeddings, got %+v", *s)
			}
		case "longrope":
			if err := c.validLongRope(); err != nil {
				return bad("rope_scaling", "longrope: %v", err)
			}
		default:
			return bad("rope_scaling.rope_type", "%q is not supported (default, linear, llama3, longrope)", s.kind())
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

// gemma3TextDefaults are Gemma3TextConfig's defaults, which the
// text_config of a Gemma 3 image-and-text config.json leaves out.
var gemma3TextDefaults = map[string]any{
	"vocab_size": 262208, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
	"num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "rms_norm_eps": 1e-6,
	"rope_theta": 1e6, "rope_local_base_freq": 10000.0, "max_position_embeddings": 131072,
	"tie_word_embeddings": true, "query_pre_attn_scalar": 256, "sliding_window": 4096,
	"hidden_activation": "gelu_pytorch_tanh", "bos_token_id": 2, "eos_token_id": 1,
}

// textOfImageText turns the config.json of a Gemma 3 image-and-text
// checkpoint (model_type "gemma3", as gemma-3-4b and larger ship) into its
// language model's own, a gemma3_text config: text_config with
// Gemma3TextConfig's defaults filled in (and the outer ids and dtype). The
// student is that language model; the vision tower is not read
// (Config.checkpointName), and Save writes a text-only checkpoint. Other
// configs come back as they are.
func textOfImageText(data []byte) ([]byte, bool, error) {
	var outer map[string]any
	if json.Unmarshal(data, &outer) != nil || outer["model_type"] != "gemma3" {
		return data, false, nil // a syntax error is reported by the caller's parse
	}
	text, ok := outer["text_config"].(map[string]any)
	if !ok {
		return nil, false, fmt.Errorf("%w: text_config: missing in a gemma3 (image-and-text) config", ErrConfig)
	}
	flat := map[string]any{}
	for k, v := range gemma3TextDefaults {
		flat[k] = v
	}
	for _, k := range []string{"bos_token_id", "eos_token_id", "pad_token_id", "torch_dtype"} {
		if v, ok := outer[k]; ok {
			flat[k] = v
		}
	}
	for k, v := range text {
		flat[k] = v
	}
	flat["model_type"] = "gemma3_text"
	flat["architectures"] = []any{"Gemma3ForCausalLM"}
	out, err := json.Marshal(flat)
	return out, true, err
}

// checkpointName maps a tensor name of the checkpoint to the model's
// ("" for a tensor the student does not use). In a Gemma 3 image-and-text
// checkpoint the language model's tensors sit under language_model.
// (older files) or model.language_model. (transformers 4.52 on), and the
// vision tower and its projector are left out.
func (c *Config) checkpointName(name string) string {
	if !c.fromImageText {
		return name
	}
	for _, p := range []struct{ from, to string }{
		{"language_model.model.", "model."}, {"language_model.lm_head.", "lm_head."},
		{"model.language_model.", "model."},
	} {
		if rest, ok := strings.CutPrefix(name, p.from); ok {
			return p.to + rest
		}
	}
	if name == "lm_head.weight" {
		return name
	}
	return ""
}

// Gemma reports a Gemma 2 or Gemma 3 decoder: RMSNorm scales by 1 + weight,
// the embedding by sqrt(hidden_size), and each block norms the attention's
// and the MLP's outputs before adding them (four norms a layer).
func (c *Config) Gemma() bool { return c.ModelType == "gemma2" || c.ModelType == "gemma3_text" }

// activation is the MLP's activation and the field that names it.
func (c *Config) activation() (field, act string) {
	switch {
	case c.Gemma() && c.HiddenActivation != "":
		return "hidden_activation", c.HiddenActivation
	case c.Gemma() && c.HiddenAct == "":
		return "hidden_activation", "gelu_pytorch_tanh"
	}
	return "hidden_act", c.HiddenAct
}

// slidingLayer reports whether layer i attends through the sliding window,
// as Hugging Face decides it: layer_types when the config lists them;
// otherwise Mistral and Phi-3 window every layer (when sliding_window is set), Qwen
// the layers from max_window_layers on with use_sliding_window, SmolLM3
// its NoPE layers with use_sliding_window, Gemma 2
// every other layer from the first, and Gemma 3 all but every
// sliding_window_pattern-th.
func (c *Config) slidingLayer(i int) bool {
	if c.LayerTypes != nil {
		return c.LayerTypes[i] == "sliding_attention"
	}
	switch c.ModelType {
	case "mistral", "phi3":
		return c.SlidingWindow != nil
	case "qwen2", "qwen3":
		return c.UseSlidingWindow && i >= c.MaxWindowLayers
	case "smollm3":
		return c.UseSlidingWindow && c.SlidingWindow != nil && !c.LayerRope(i)
	case "gemma2":
		return i%2 == 0
	case "gemma3_text":
		pattern := c.SlidingWindowPattern
		if pattern == 0 {
			pattern = 6
		}
		return (i+1)%pattern != 0
	}
	return false
}

// LayerRope reports whether layer i rotates its queries and keys: every
// layer but SmolLM3's NoPE layers (no_rope_layers, by default every
// no_rope_layer_interval-th).
func (c *Config) LayerRope(i int) bool {
	if c.ModelType != "smollm3" {
		return true
	}
	if c.NoRopeLayers != nil {
		return c.NoRopeLayers[i] == 1
	}
	interval := c.NoRopeLayerInterval
	if interval == 0 {
		interval = 4
	}
	return (i+1)%interval != 0
}

// LayerWindow is the sliding window W of layer i's attention (a query at
// index q sees the keys at q-W < k <= q), or 0 when the layer sees every
// earlier key.
func (c *Config) LayerWindow(i int) int {
	if c.slidingLayer(i) {
		return *c.SlidingWindow
	}
	return 0
}

// Window is the sliding window of the windowed layers, or 0 when no layer
// is windowed.
func (c *Config) Window() int {
	for i := range c.NumHiddenLayers {
		if w := c.LayerWindow(i); w > 0 {
			return w
		}
	}
	return 0
}

// QKVBias reports whether q/k/v projections carry a bias (always in Qwen2).
func (c *Config) QKVBias() bool { return c.ModelType == "qwen2" || c.AttentionBias }

// QKNorm reports whether queries and keys get a per-head RMSNorm (Qwen3, Gemma 3).
func (c *Config) QKNorm() bool { return c.ModelType == "qwen3" || c.ModelType == "gemma3_text" }

// PostNorm reports OLMo 2's block: no norm before attention or the MLP,
// an RMSNorm on each one's output before it is added
// (post_attention_layernorm, post_feedforward_layernorm), and RMSNorms on
// the whole query and key projections (all heads together) before RoPE.
func (c *Config) PostNorm() bool { return c.ModelType == "olmo2" }

// multiplier is one of Granite's multipliers, 1 when absent.
func multiplier(v *float64) float64 {
	if v == nil {
		return 1
	}
	return *v
}

// AttentionScale multiplies the query·key scores before the softmax.
func (c *Config) AttentionScale() float64 {
	switch {
	case c.Gemma():
		return 1 / math.Sqrt(c.QueryPreAttnScalar)
	case c.ModelType == "granite":
		return multiplier(c.AttentionMultiplier)
	}
	return 1 / math.Sqrt(float64(c.HeadDim))
}

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

// RotaryDim is how many dimensions of each head rotate: head_dim, or
// int(head_dim · partial_rotary_factor) (Phi-3's partial rotary).
func (c *Config) RotaryDim() int {
	if c.PartialRotaryFactor == 0 {
		return c.HeadDim
	}
	return int(float64(c.HeadDim) * c.PartialRotaryFactor)
}

// validLongRope checks longrope's fields: one short and one long factor per
// rotated frequency, and a context to switch at.
func (c *Config) validLongRope() error {
	s, half := c.RopeScaling, c.RotaryDim()/2
	for _, f := range []struct {
		name string
		v    []float64
	}{{"short_factor", s.ShortFactor}, {"long_factor", s.LongFactor}} {
		if len(f.v) != half {
			return fmt.Errorf("%s has %d entries, want %d (rotary dimensions / 2)", f.name, len(f.v), half)
		}
		for i, x := range f.v {
			if !(x > 0) {
				return fmt.Errorf("%s[%d] is %g, want > 0", f.name, i, x)
			}
		}
	}
	if s.AttentionFactor != nil && !(*s.AttentionFactor > 0) {
		return fmt.Errorf("attention_factor is %g, want > 0", *s.AttentionFactor)
	}
	if c.OriginalMaxPositionEmbeddings == 0 && !(s.Factor > 0) {
		return fmt.Errorf("needs original_max_position_embeddings or a factor")
	}
	if c.LongRopeFrom() <= 0 {
		return fmt.Errorf("needs original_max_position_embeddings or max_position_embeddings")
	}
	return nil
}

// LongRope reports rope_scaling "longrope" (Phi-3.5, Phi-4-mini).
func (c *Config) LongRope() bool { return c.RopeScaling != nil && c.RopeScaling.kind() == "longrope" }

// LongRopeFrom is the sequence length past which longrope rotates with its
// long factors: original_max_position_embeddings (top level, else in
// rope_scaling), else max_position_embeddings, as transformers decides it.
// A sequence of at most this many tokens uses the short factors.
func (c *Config) LongRopeFrom() int {
	switch {
	case c.OriginalMaxPositionEmbeddings > 0:
		return c.OriginalMaxPositionEmbeddings
	case c.RopeScaling != nil && c.RopeScaling.OriginalMaxPositionEmbeddings > 0:
		return c.RopeScaling.OriginalMaxPositionEmbeddings
	}
	return c.MaxPositionEmbeddings
}

// RopeAttentionFactor multiplies cos and sin (so every query·key score by
// its square): longrope's attention_factor, by default
// sqrt(1 + ln(factor) / ln(original context)) with factor =
// max_position_embeddings / original_max_position_embeddings when the
// config has the latter (Phi-3), else rope_scaling's factor; 1 otherwise.
func (c *Config) RopeAttentionFactor() float64 {
	if !c.LongRope() {
		return 1
	}
	s := c.RopeScaling
	if s.AttentionFactor != nil {
		return *s.AttentionFactor
	}
	factor, orig := s.Factor, c.MaxPositionEmbeddings
	if c.OriginalMaxPositionEmbeddings > 0 {
		factor, orig = float64(c.MaxPositionEmbeddings)/float64(c.OriginalMaxPositionEmbeddings), c.OriginalMaxPositionEmbeddings
	}
	if factor <= 1 {
		return 1
	}
	return math.Sqrt(1 + math.Log(factor)/math.Log(float64(orig)))
}

// InvFreq returns the rotary inverse frequencies (RotaryDim/2 of them) of
// layer i as Hugging Face computes them in float32: rope_theta with
// rope_scaling (Llama 3, linear, or longrope's short factors) applied,
// except on Gemma 3's windowed layers, which use rope_local_base_freq
// unscaled.
func (c *Config) InvFreq(layer int) []float32 {
	return c.invFreq(layer, false)
}

// LongInvFreq is InvFreq with longrope's long factors, for sequences
// longer than LongRopeFrom (nil without longrope).
func (c *Config) LongInvFreq(layer int) []float32 {
	if !c.LongRope() {
		return nil
	}
	return c.invFreq(layer, true)
}

func (c *Config) invFreq(layer int, long bool) []float32 {
	theta, s := c.RopeTheta, c.RopeScaling
	if c.ModelType == "gemma3_text" && c.slidingLayer(layer) {
		theta, s = c.RopeLocalBaseFreq, nil
	}
	dim := c.RotaryDim()
	inv := make([]float32, dim/2)
	for i := range inv {
		exp := float32(2*i) / float32(dim)
		inv[i] = float32(1.0 / math.Pow(theta, float64(exp)))
	}
	switch {
	case s == nil:
		return inv
	case s.kind() == "linear":
		for i, f := range inv {
			inv[i] = float32(float64(f) / s.Factor)
		}
		return inv
	case s.kind() == "longrope":
		ext := s.ShortFactor
		if long {
			ext = s.LongFactor
		}
		for i, f := range inv {
			inv[i] = float32(float64(f) / ext[i])
		}
		return inv
	case s.kind() != "llama3":
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

// splitRopeParameters reads transformers 5's rope_parameters when it holds
// one entry per layer type (Gemma 3: "full_attention" and
// "sliding_attention") into rope_theta, rope_scaling and
// rope_local_base_freq.
func (c *Config) splitRopeParameters(data []byte) error {
	var raw struct {
		RopeParameters map[string]json.RawMessage `json:"rope_parameters"`
	}
	if json.Unmarshal(data, &raw) != nil {
		return nil // not a per-layer-type object: read as one rope_parameters
	}
	full, sliding := raw.RopeParameters["full_attention"], raw.RopeParameters["sliding_attention"]
	if full == nil && sliding == nil {
		return nil
	}
	c.RopeParameters = nil
	for _, p := range []struct {
		name string
		raw  json.RawMessage
		set  func(*RopeScaling)
	}{
		{"full_attention", full, func(r *RopeScaling) {
			c.RopeTheta = r.RopeTheta
			if r.kind() != "default" {
				c.RopeScaling = r
			}
		}},
		{"sliding_attention", sliding, func(r *RopeScaling) { c.RopeLocalBaseFreq = r.RopeTheta }},
	} {
		if p.raw == nil {
			continue
		}
		r := &RopeScaling{}
		if err := json.Unmarshal(p.raw, r); err != nil {
			return fmt.Errorf("%w: rope_parameters.%s: %v", ErrConfig, p.name, err)
		}
		if p.name == "sliding_attention" && r.kind() != "default" {
			return fmt.Errorf("%w: rope_parameters.sliding_attention.rope_type: %q is not supported (default)", ErrConfig, r.kind())
		}
		p.set(r)
	}
	return nil
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
