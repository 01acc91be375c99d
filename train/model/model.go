package model

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // the model reads like the math
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// The decoder, top to bottom as in Hugging Face's modeling_llama.py,
// modeling_mistral.py (Llama's layout plus a sliding window),
// modeling_qwen2.py, modeling_qwen3.py, modeling_gemma2.py and
// modeling_gemma3.py (Gemma3ForCausalLM). Every weight is a context variable whose scope and name
// spell its checkpoint name: "model.layers.0.self_attn.q_proj.weight" lives
// in scope /model/layers/0/self_attn/q_proj under the name "weight".
//
// Shapes: B batch, T query positions, S key positions, D hidden_size,
// H attention heads, K key/value heads, G = H/K queries per key/value head,
// E head_dim, F intermediate_size, V vocab_size.

// Forward computes next-token logits [B, T, V] for tokens [B, T] (int32).
// positions [B, T] (int32) are the rotary positions (0, 1, 2, … for a
// right-padded batch); valid [B, T] (bool) marks real tokens: a position
// attends to the real positions at or before its own index (and, in a layer
// with a sliding window W, after index-W: Config.LayerWindow).
func Forward(ctx *context.Context, cfg *Config, tokens, positions, valid *Node) *Node {
	hidden := decoder(ctx, cfg, tokens, positions, spanOf(cfg, positions, valid), causalMasks(valid), nil)
	return LMHead(ctx, cfg, hidden)
}

// spanOf is each row's last valid position + 1 [B, 1], or nil for a model
// that does not read it (decoder).
func spanOf(cfg *Config, positions, valid *Node) *Node {
	if !cfg.LongRope() {
		return nil
	}
	next := AddScalar(positions, 1)
	return ReduceAndKeep(Where(valid, next, ZerosLike(next)), ReduceMax, 1)
}

// ForwardSegments is Forward for packed rows: segments [B, T] (int32)
// numbers the sequences packed in each row (1, 2, …; 0 is padding), and a
// token attends only to tokens at or before it in its own segment (and
// within the sliding window, if any). positions restart at 0 for each segment.
func ForwardSegments(ctx *context.Context, cfg *Config, tokens, positions, segments *Node) *Node {
	b, t := segments.Shape().Dimensions[0], segments.Shape().Dimensions[1]
	same := Equal(InsertAxes(segments, -1), InsertAxes(segments, 1))                           // [B, T, S]
	notPad := BroadcastToDims(InsertAxes(NotEqual(segments, ZerosLike(segments)), 1), b, t, t) // [B, T, S]
	ok := LogicalAnd(same, notPad)
	masks := perWindow(func(w int) *Node { return LogicalAnd(ok, BroadcastPrefix(causal(w, segments.Graph(), t), b)) })
	var span *Node // each token's sequence: its segment's last position + 1 [B, T]
	if cfg.LongRope() {
		next := BroadcastToDims(InsertAxes(AddScalar(positions, 1), 1), b, t, t) // [B, T, S]: key s's position + 1
		span = ReduceMax(Where(ok, next, ZerosLike(next)), -1)
	}
	hidden := decoder(ctx, cfg, tokens, positions, span, masks, nil)
	return LMHead(ctx, cfg, hidden)
}

// maskFunc gives the attention mask [B, T, S] (which keys each query sees)
// of a layer with sliding window w (0: none).
type maskFunc func(w int) *Node

// perWindow makes build a maskFunc that builds each window's mask once per
// graph, however many layers share it.
func perWindow(build func(w int) *Node) maskFunc {
	masks := map[int]*Node{}
	return func(w int) *Node {
		if masks[w] == nil {
			masks[w] = build(w)
		}
		return masks[w]
	}
}

// attends says whether the query at index q sees the key at index k (int32
// nodes that broadcast together): k <= q and, with a sliding window w > 0,
// k > q-w — Hugging Face's causal mask and sliding_window_overlay. Every
// attention mask (training, prefill, each cached decode step) comes from here.
func attends(w int, q, k *Node) *Node {
	ok := LessOrEqual(k, q)
	if w > 0 {
		ok = LogicalAnd(ok, GreaterThan(k, AddScalar(q, float64(-w))))
	}
	return ok
}

// causal [T, S]: query t sees key s (attends).
func causal(w int, g *Graph, t int) *Node {
	return attends(w, Iota(g, shapes.Make(dtypes.Int32, t, t), 0), Iota(g, shapes.Make(dtypes.Int32, t, t), 1))
}

// causalMasks [B, T, S]: query t may see key s when causal allows it and s is valid.
func causalMasks(valid *Node) maskFunc {
	b, t := valid.Shape().Dimensions[0], valid.Shape().Dimensions[1]
	ok := BroadcastToDims(InsertAxes(valid, 1), b, t, t)
	return perWindow(func(w int) *Node { return LogicalAnd(BroadcastPrefix(causal(w, valid.Graph(), t), b), ok) })
}

// kvFunc lets generation see and replace each layer's keys and values
// [B, K, T, E] before attention uses them (the KV cache); nil in training.
type kvFunc func(layer int, k, v *Node) (*Node, *Node)

// decoder runs embedding, the layers and the final norm: hidden [B, T, D].
// masks gives each layer's mask by its window. span [B, T] or [B, 1]
// (int32) is how many positions the sequence of each token (or each row)
// covers, its last real position + 1: longrope rotates a token with its long
// factors when its sequence passes Config.LongRopeFrom, as transformers
// does a sequence run alone; other models do not read it.
func decoder(ctx *context.Context, cfg *Config, tokens, positions, span *Node, masks maskFunc, kv kvFunc) *Node {
	ctx = ctx.Checked(false)
	x := embed(ctx.In("model").In("embed_tokens"), cfg, tokens) // [B, T, D]
	type rope struct {
		inv      []float32
		cos, sin *Node // [B, 1, T, E] each
	}
	var ropes []rope // one per distinct set of frequencies (Gemma 3: global and local)
	rotaryOf := func(layer int) (cos, sin *Node) {
		inv := cfg.InvFreq(layer)
		for _, r := range ropes {
			if slices.Equal(r.inv, inv) {
				return r.cos, r.sin
			}
		}
		cos, sin = rotary(cfg, layer, positions, span)
		ropes = append(ropes, rope{inv, cos, sin})
		return cos, sin
	}
	for i := range cfg.NumHiddenLayers {
		layer := ctx.In("model").In("layers").In(strconv.Itoa(i))
		var cos, sin *Node // nil: a layer without rotary positions (Config.LayerRope)
		if cfg.LayerRope(i) {
			cos, sin = rotaryOf(i)
		}
		h := x // OLMo 2 norms each block's output, not its input
		if !cfg.PostNorm() {
			h = rmsNorm(layer.In("input_layernorm"), cfg, x)
		}
		a := attention(layer.In("self_attn"), cfg, h, cos, sin, masks(cfg.LayerWindow(i)), func(k, v *Node) (*Node, *Node) {
			if kv == nil {
				return k, v
			}
			return kv(i, k, v)
		})
		switch {
		case cfg.Gemma(): // norms on both sides of each block
			x = Add(x, rmsNorm(layer.In("post_attention_layernorm"), cfg, a))
			m := mlp(layer.In("mlp"), cfg, rmsNorm(layer.In("pre_feedforward_layernorm"), cfg, x))
			x = Add(x, rmsNorm(layer.In("post_feedforward_layernorm"), cfg, m))
		case cfg.PostNorm():
			x = Add(x, rmsNorm(layer.In("post_attention_layernorm"), cfg, a))
			x = Add(x, rmsNorm(layer.In("post_feedforward_layernorm"), cfg, mlp(layer.In("mlp"), cfg, x)))
		default: // Granite scales each block's output by residual_multiplier
			r := multiplier(cfg.ResidualMultiplier)
			x = Add(x, scaled(a, r))
			x = Add(x, scaled(mlp(layer.In("mlp"), cfg, rmsNorm(layer.In("post_attention_layernorm"), cfg, x)), r))
		}
	}
	return rmsNorm(ctx.In("model").In("norm"), cfg, x)
}

// LMHead projects hidden states [..., D] to logits [..., V] with lm_head, or
// with the token embedding when tie_word_embeddings is set (Gemma 2
// soft-caps them: final_logit_softcapping; Granite divides them by
// logits_scaling).
func LMHead(ctx *context.Context, cfg *Config, hidden *Node) *Node {
	ctx = ctx.Checked(false)
	var logits *Node
	if cfg.TieWordEmbeddings {
		w := storedWeight(ctx.In("model").In("embed_tokens"), hidden.Graph(), "weight", cfg.VocabSize, cfg.HiddenSize)
		logits = ComputeDot(ctx, hidden, []int{hidden.Rank() - 1}, nil, w, []int{1}, nil)
	} else {
		logits = Linear(ctx.In("lm_head"), hidden, cfg.VocabSize, false)
	}
	return softcap(scaled(logits, 1/multiplier(cfg.LogitsScaling)), cfg.FinalLogitSoftcapping)
}

// scaled is x·f, or x itself when f is 1.
func scaled(x *Node, f float64) *Node {
	if f == 1 {
		return x
	}
	return MulScalar(x, f)
}

// softcap is limit·tanh(x/limit), or x when limit is nil.
func softcap(x *Node, limit *float64) *Node {
	if limit == nil {
		return x
	}
	return MulScalar(Tanh(DivScalar(x, *limit)), *limit)
}

// Linear is y = x·Wᵀ (+ b) with W [out, in] as Hugging Face stores it, read
// from ctx's "weight" (and "bias"). Every projection of the model (q, k, v,
// o, gate, up, down and an untied lm_head) goes through here and nowhere
// else, so this is the one place adapters act: when an Adapter is set for
// the graph (UseAdapter), Linear returns adapter(ctx, module, x, y), with
// module the projection's name ("q_proj", "down_proj", …) and ctx scoped
// at it (e.g. /model/layers/3/self_attn/q_proj), where LoRA keeps its A and B.
func Linear(ctx *context.Context, x *Node, out int, bias bool) *Node {
	in := x.Shape().Dimensions[x.Rank()-1]
	w := storedWeight(ctx, x.Graph(), "weight", out, in)
	y := ComputeDot(ctx, x, []int{x.Rank() - 1}, nil, w, []int{1}, nil) // [..., out]
	if bias {
		y = Add(y, alongLastAxis(weight(ctx, x.Graph(), "bias", out), y.Rank()))
	}
	if adapter, ok := ctx.GetGraphParam(x.Graph(), adapterParam); ok && adapter != nil {
		if fn, _ := adapter.(Adapter); fn != nil {
			scope := ctx.Scope()
			y = fn(ctx, scope[strings.LastIndexByte(scope, '/')+1:], x, y)
		}
	}
	return y
}

// Adapter changes a projection's output y = Linear(x) — LoRA adds
// scale·(x·Aᵀ)·Bᵀ. module is the projection's name ("q_proj", …) and ctx is
// scoped at it. An adapter that leaves a module alone returns y.
type Adapter func(ctx *context.Context, module string, x, y *Node) *Node

const adapterParam = "statjob_linear_adapter"

// UseAdapter makes every Linear built in graph g under ctx (and its
// sub-scopes) pass through adapter (nil: none). It is a graph parameter, so
// it never reaches a saved checkpoint and does not leak into other graphs.
func UseAdapter(ctx *context.Context, g *Graph, adapter Adapter) {
	ctx.SetGraphParam(g, adapterParam, adapter)
}

const computeDTypeParam = "statjob_compute_dtype"

// UseComputeDType makes the matrix products of graph g built under ctx (the
// projections, the lm_head, attention's q·kᵀ and p·v) run in dtype — e.g.
// dtypes.BFloat16 for mixed precision — with operands cast to it and the
// product cast back to float32. Everything else stays float32: the weights
// themselves (master copies: gradients flow back through the casts to them,
// so an optimizer updates float32), the residual stream, RMSNorm statistics,
// RoPE angles and rotation, the attention mask and softmax, SwiGLU and the
// loss. A graph parameter like UseAdapter: it never reaches a checkpoint.
// dtypes.Float32 (the default) leaves the graph all float32.
func UseComputeDType(ctx *context.Context, g *Graph, dtype dtypes.DType) {
	ctx.SetGraphParam(g, computeDTypeParam, dtype)
}

// ComputeDType is the matrix-product dtype set for g by UseComputeDType
// (float32 when none is set).
func ComputeDType(ctx *context.Context, g *Graph) dtypes.DType {
	if v, ok := ctx.GetGraphParam(g, computeDTypeParam); ok {
		if dt, ok := v.(dtypes.DType); ok && dt != dtypes.InvalidDType {
			return dt
		}
	}
	return dtypes.Float32
}

// ComputeDot is DotGeneral in the graph's compute dtype: operands cast to it, the product
// cast back to lhs's dtype (float32), so only the matrix product itself runs
// in reduced precision.
func ComputeDot(ctx *context.Context, lhs *Node, lhsContract, lhsBatch []int, rhs *Node, rhsContract, rhsBatch []int) *Node {
	dt := ComputeDType(ctx, lhs.Graph())
	if dt == lhs.DType() && dt == rhs.DType() {
		return DotGeneral(lhs, lhsContract, lhsBatch, rhs, rhsContract, rhsBatch)
	}
	out := DotGeneral(ConvertDType(lhs, dt), lhsContract, lhsBatch, ConvertDType(rhs, dt), rhsContract, rhsBatch)
	return ConvertDType(out, lhs.DType())
}

// weight reads (or, in an empty context, creates) the variable name as
// float32, converting weights held in bfloat16 (LoadAs).
func weight(ctx *context.Context, g *Graph, name string, dims ...int) *Node {
	return ConvertDType(storedWeight(ctx, g, name, dims...), dtypes.Float32)
}

// storedWeight reads the variable name in the dtype it is held in: float32,
// or bfloat16 for a model loaded with LoadAs. The matrix products take it
// as it is (ComputeDot casts to the compute dtype), so a bfloat16 weight is
// never held in float32 whole.
func storedWeight(ctx *context.Context, g *Graph, name string, dims ...int) *Node {
	if v := ctx.GetVariable(name); v != nil && v.Shape().DType != dtypes.Float32 {
		if !slices.Equal(v.Shape().Dimensions, dims) {
			panic(fmt.Sprintf("model: variable %s/%s has shape %v, want %v", ctx.Scope(), name, v.Shape().Dimensions, dims))
		}
		return v.ValueGraph(g)
	}
	return ctx.VariableWithShape(name, shapes.Make(dtypes.Float32, dims...)).ValueGraph(g)
}

// embed looks tokens [B, T] up in embed_tokens.weight [V, D] (the rows
// gathered in the dtype the table is held in, then made float32); Gemma
// scales them by sqrt(hidden_size), rounded to float32 as its buffer is.
func embed(ctx *context.Context, cfg *Config, tokens *Node) *Node {
	w := storedWeight(ctx, tokens.Graph(), "weight", cfg.VocabSize, cfg.HiddenSize)
	x := ConvertDType(Gather(w, InsertAxes(tokens, -1)), dtypes.Float32)
	if cfg.Gemma() {
		x = MulScalar(x, float64(float32(math.Sqrt(float64(cfg.HiddenSize)))))
	}
	return scaled(x, multiplier(cfg.EmbeddingMultiplier))
}

// alongLastAxis reshapes a vector to rank axes [1, …, 1, n] for broadcasting.
func alongLastAxis(v *Node, rank int) *Node {
	dims := make([]int, rank)
	for i := range dims {
		dims[i] = 1
	}
	dims[rank-1] = v.Shape().Dimensions[0]
	return Reshape(v, dims...)
}

// rmsNorm is x / sqrt(mean(x²) + eps) · weight over the last axis
// (Gemma: · (1 + weight)). (Rsqrt has no gradient in GoMLX, hence 1/Sqrt.)
func rmsNorm(ctx *context.Context, cfg *Config, x *Node) *Node {
	d := x.Shape().Dimensions[x.Rank()-1]
	w := weight(ctx, x.Graph(), "weight", d)
	if cfg.Gemma() {
		w = OnePlus(w)
	}
	variance := ReduceAndKeep(Square(x), ReduceMean, -1)
	return Mul(Div(x, Sqrt(AddScalar(variance, cfg.RMSNormEps))), alongLastAxis(w, x.Rank()))
}

// rotary returns layer's cos and sin [B, 1, T, E] of positions·invFreq,
// repeated over the two halves of the rotated dimensions (Hugging Face's
// layout). With a partial rotary (RotaryDim < E) the dimensions past it
// get cos 1 and sin 0: they pass through. With longrope, a token whose
// sequence's span passes Config.LongRopeFrom takes the long factors'
// frequencies, and cos and sin are scaled by the attention factor.
func rotary(cfg *Config, layer int, positions, span *Node) (cos, sin *Node) {
	g := positions.Graph()
	pos := InsertAxes(ConvertDType(positions, dtypes.Float32), -1) // [B, T, 1]
	emb := func(inv []float32) *Node {
		freqs := Mul(pos, alongLastAxis(Const(g, inv), 3)) // [B, T, rd/2]
		return Concatenate([]*Node{freqs, freqs}, -1)      // [B, T, rd]
	}
	angles := emb(cfg.InvFreq(layer))
	if long := cfg.LongInvFreq(layer); long != nil {
		past := GreaterThan(span, Scalar(g, span.DType(), cfg.LongRopeFrom())) // [B, T] or [B, 1]
		angles = Where(BroadcastToShape(InsertAxes(past, -1), angles.Shape()), emb(long), angles)
	}
	a := cfg.RopeAttentionFactor()
	cos, sin = scaled(Cos(angles), a), scaled(Sin(angles), a)
	if pass := cfg.HeadDim - cfg.RotaryDim(); pass > 0 {
		dims := slices.Clone(cos.Shape().Dimensions)
		dims[2] = pass
		cos = Concatenate([]*Node{cos, Ones(g, shapes.Make(dtypes.Float32, dims...))}, -1)
		sin = Concatenate([]*Node{sin, Zeros(g, shapes.Make(dtypes.Float32, dims...))}, -1)
	}
	return InsertAxes(cos, 1), InsertAxes(sin, 1)
}

// applyRotary is x·cos + rotate_half(x)·sin for x [B, heads, T, E], where
// rotate_half(x) = concat(-x[rd/2:rd], x[:rd/2]) on the first rd rotated
// dimensions (the rest have sin 0: rotary). It is computed as x·R with a
// constant signed permutation R: a Slice-based version has no CPU gradient.
func applyRotary(x, cos, sin *Node, rd int) *Node {
	e := x.Shape().Dimensions[3]
	r := make([][]float32, e)
	for i := range r {
		r[i] = make([]float32, e)
	}
	for i := range rd / 2 {
		r[i+rd/2][i] = -1 // out[i] = -x[i+rd/2]
		r[i][i+rd/2] = 1  // out[i+rd/2] = x[i]
	}
	rotated := DotGeneral(x, []int{3}, nil, Const(x.Graph(), r), []int{0}, nil)
	return Add(Mul(x, cos), Mul(rotated, sin))
}

// attention is grouped-query self-attention for h [B, T, D], rotating
// queries and keys by cos and sin unless they are nil (a NoPE layer).
func attention(ctx *context.Context, cfg *Config, h, cos, sin, mask *Node, kv func(k, v *Node) (*Node, *Node)) *Node {
	b, t := h.Shape().Dimensions[0], h.Shape().Dimensions[1]
	nh, nkv, e := cfg.NumAttentionHeads, cfg.NumKeyValueHeads, cfg.HeadDim
	heads := func(x *Node, n int) *Node { // [B, T, n·E] → [B, n, T, E]
		return TransposeAllAxes(Reshape(x, b, t, n, e), 0, 2, 1, 3)
	}
	q := Linear(ctx.In("q_proj"), h, nh*e, cfg.QKVBias())
	k := Linear(ctx.In("k_proj"), h, nkv*e, cfg.QKVBias())
	if cfg.PostNorm() { // OLMo 2: one norm over all heads
		q, k = rmsNorm(ctx.In("q_norm"), cfg, q), rmsNorm(ctx.In("k_norm"), cfg, k)
	}
	q, k = heads(q, nh), heads(k, nkv)
	v := heads(Linear(ctx.In("v_proj"), h, nkv*e, cfg.QKVBias()), nkv)
	if cfg.QKNorm() {
		q = rmsNorm(ctx.In("q_norm"), cfg, q)
		k = rmsNorm(ctx.In("k_norm"), cfg, k)
	}
	if cos != nil {
		q, k = applyRotary(q, cos, sin, cfg.RotaryDim()), applyRotary(k, cos, sin, cfg.RotaryDim())
	}
	k, v = kv(k, v) // [B, K, S, E]
	s := k.Shape().Dimensions[2]

	// Query head j uses key/value head j / G: group the queries as [B, K, G, T, E].
	g := nh / nkv
	qg := Reshape(q, b, nkv, g, t, e)
	scores := ComputeDot(ctx, qg, []int{4}, []int{0, 1}, k, []int{3}, []int{0, 1}) // [B, K, G, T, S]
	scores = softcap(MulScalar(scores, cfg.AttentionScale()), cfg.AttnLogitSoftcapping)
	allowed := BroadcastToDims(Reshape(mask, b, 1, 1, t, s), b, nkv, g, t, s)
	scores = Where(allowed, scores, BroadcastToDims(Scalar(h.Graph(), dtypes.Float32, -1e30), b, nkv, g, t, s))
	probs := Softmax(scores, -1)
	out := ComputeDot(ctx, probs, []int{4}, []int{0, 1}, v, []int{2}, []int{0, 1}) // [B, K, G, T, E]
	out = Reshape(TransposeAllAxes(out, 0, 3, 1, 2, 4), b, t, nh*e)                // [B, T, H·E]
	return Linear(ctx.In("o_proj"), out, cfg.HiddenSize, cfg.AttentionBias)
}

// mlp is a gated MLP, down(act(gate(h)) · up(h)): SwiGLU (silu), or
// Gemma's GeGLU with the tanh approximation of GELU (gelu_pytorch_tanh).
func mlp(ctx *context.Context, cfg *Config, h *Node) *Node {
	gate := Linear(ctx.In("gate_proj"), h, cfg.IntermediateSize, cfg.MLPBias)
	up := Linear(ctx.In("up_proj"), h, cfg.IntermediateSize, cfg.MLPBias)
	var act *Node
	if _, name := cfg.activation(); name == "gelu_pytorch_tanh" {
		// 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³)))
		inner := MulScalar(Add(gate, MulScalar(Mul(gate, Square(gate)), 0.044715)), math.Sqrt(2/math.Pi))
		act = Mul(MulScalar(gate, 0.5), OnePlus(Tanh(inner)))
	} else {
		act = Mul(gate, Sigmoid(gate))
	}
	return Linear(ctx.In("down_proj"), Mul(act, up), cfg.HiddenSize, cfg.MLPBias)
}

// TensorNames lists the model's weights (its context variables, named as
// checkpoints name them) and their shapes for cfg, in the order Hugging
// Face writes them. A checkpoint holds exactly these, except that Phi-3
// fuses some of them into one tensor (CheckpointTensors).
func TensorNames(cfg *Config) []TensorHeader {
	d, e := cfg.HiddenSize, cfg.HeadDim
	hs := []TensorHeader{{"model.embed_tokens.weight", []int{cfg.VocabSize, d}}}
	for i := range cfg.NumHiddenLayers {
		p := "model.layers." + strconv.Itoa(i) + "."
		add := func(name string, dims ...int) { hs = append(hs, TensorHeader{p + name, dims}) }
		if !cfg.PostNorm() {
			add("input_layernorm.weight", d)
		}
		add("self_attn.q_proj.weight", cfg.NumAttentionHeads*e, d)
		add("self_attn.k_proj.weight", cfg.NumKeyValueHeads*e, d)
		add("self_attn.v_proj.weight", cfg.NumKeyValueHeads*e, d)
		if cfg.QKVBias() {
			add("self_attn.q_proj.bias", cfg.NumAttentionHeads*e)
			add("self_attn.k_proj.bias", cfg.NumKeyValueHeads*e)
			add("self_attn.v_proj.bias", cfg.NumKeyValueHeads*e)
		}
		switch {
		case cfg.QKNorm():
			add("self_attn.q_norm.weight", e)
			add("self_attn.k_norm.weight", e)
		case cfg.PostNorm():
			add("self_attn.q_norm.weight", cfg.NumAttentionHeads*e)
			add("self_attn.k_norm.weight", cfg.NumKeyValueHeads*e)
		}
		add("self_attn.o_proj.weight", d, cfg.NumAttentionHeads*e)
		if cfg.AttentionBias {
			add("self_attn.o_proj.bias", d)
		}
		add("post_attention_layernorm.weight", d)
		switch {
		case cfg.Gemma():
			add("pre_feedforward_layernorm.weight", d)
			add("post_feedforward_layernorm.weight", d)
		case cfg.PostNorm():
			add("post_feedforward_layernorm.weight", d)
		}
		add("mlp.gate_proj.weight", cfg.IntermediateSize, d)
		add("mlp.up_proj.weight", cfg.IntermediateSize, d)
		add("mlp.down_proj.weight", d, cfg.IntermediateSize)
		if cfg.MLPBias {
			add("mlp.gate_proj.bias", cfg.IntermediateSize)
			add("mlp.up_proj.bias", cfg.IntermediateSize)
			add("mlp.down_proj.bias", d)
		}
	}
	hs = append(hs, TensorHeader{"model.norm.weight", []int{d}})
	if !cfg.TieWordEmbeddings {
		hs = append(hs, TensorHeader{"lm_head.weight", []int{cfg.VocabSize, d}})
	}
	return hs
}

// fusedModules are the projections Phi-3's checkpoints fuse, each with the
// model's own projections it stacks along its output rows, in order.
var fusedModules = []struct {
	block, name string // "mlp", "gate_up_proj": model.layers.<i>.mlp.gate_up_proj
	parts       []string
}{
	{"self_attn", "qkv_proj", []string{"q_proj", "k_proj", "v_proj"}},
	{"mlp", "gate_up_proj", []string{"gate_proj", "up_proj"}},
}

// SplitModule names the model's projections that a fused checkpoint
// projection ("qkv_proj", "gate_up_proj") holds, or nil for any other
// name: the model keeps them apart, so that each stays one Linear and one
// LoRA target.
func SplitModule(name string) []string {
	for _, f := range fusedModules {
		if f.name == name {
			return f.parts
		}
	}
	return nil
}

// fusedParts maps each checkpoint tensor that stacks several of the
// model's weights along its first axis to those weights, in order (a
// Phi-3 checkpoint's qkv_proj and gate_up_proj).
func fusedParts(cfg *Config) map[string][]string {
	if cfg.ModelType != "phi3" {
		return nil
	}
	m := map[string][]string{}
	for i := range cfg.NumHiddenLayers {
		for _, f := range fusedModules {
			p := "model.layers." + strconv.Itoa(i) + "." + f.block + "."
			for _, part := range f.parts {
				m[p+f.name+".weight"] = append(m[p+f.name+".weight"], p+part+".weight")
			}
		}
	}
	return m
}

// CheckpointTensors lists the tensors and shapes of cfg's checkpoint:
// TensorNames with each fused group (fusedParts) as one tensor, in its
// first part's place.
func CheckpointTensors(cfg *Config) []TensorHeader {
	fused := fusedParts(cfg)
	if fused == nil {
		return TensorNames(cfg)
	}
	into := map[string]string{} // part → its fused tensor
	for f, parts := range fused {
		for _, p := range parts {
			into[p] = f
		}
	}
	var hs []TensorHeader
	at := map[string]int{} // fused tensor → its index in hs
	for _, h := range TensorNames(cfg) {
		f, ok := into[h.Name]
		if !ok {
			hs = append(hs, h)
			continue
		}
		i, seen := at[f]
		if !seen {
			i, at[f] = len(hs), len(hs)
			hs = append(hs, TensorHeader{f, []int{0, h.Shape[1]}})
		}
		hs[i].Shape[0] += h.Shape[0] // the parts stack along the rows
	}
	return hs
}

// scopeOf splits a checkpoint name into a context scope and variable name:
// "model.norm.weight" → ("/model/norm", "weight").
func scopeOf(name string) (scope, varName string) {
	i := strings.LastIndexByte(name, '.')
	return "/" + strings.ReplaceAll(name[:i], ".", "/"), name[i+1:]
}

// nameOf is the inverse of scopeOf.
func nameOf(scope, varName string) string {
	return strings.ReplaceAll(strings.TrimPrefix(scope, "/"), "/", ".") + "." + varName
}
