// Package model is statjob's student model: the Llama / Mistral / Qwen2 /
// Qwen3 / Gemma 2 / Gemma 3 (text) / Phi-3 / SmolLM3 / OLMo 2 / Granite
// decoder in GoMLX, read from and written
// to Hugging Face's layout, with the loss for fine-tuning and a KV-cached
// sampler.
//
// Sliding windows: in a windowed layer a query at index i sees the keys at
// i-W < j <= i (sliding_window W), in Forward, ForwardSegments (within each
// segment), Hidden, prefill and every cached decode step. Which layers are
// windowed follows Hugging Face (Config.LayerWindow): layer_types when the
// config lists them; otherwise every layer of Mistral and Phi-3, the layers from
// max_window_layers on of Qwen2/Qwen3 with use_sliding_window, the NoPE
// layers of SmolLM3 with use_sliding_window, every other
// layer of Gemma 2, and all but every sliding_window_pattern-th of Gemma 3.
//
// Gemma (model_type gemma2 and gemma3_text) adds to Llama's layout: RMSNorm
// scaling by 1 + weight, the embedding scaled by sqrt(hidden_size), norms
// on the attention's and MLP's outputs (pre_/post_feedforward_layernorm),
// GeGLU (gelu_pytorch_tanh), query_pre_attn_scalar; Gemma 2 soft-caps the
// attention scores and the logits, Gemma 3 norms queries and keys and
// rotates its windowed layers at rope_local_base_freq. From a Gemma 3
// image-and-text checkpoint (model_type gemma3: gemma-3-4b and larger) the
// language model is read and the vision tower left out; it saves as a
// text-only gemma3_text checkpoint.
//
// Phi-3 (model_type phi3: Phi-3, Phi-3.5 and Phi-4 mini) is Llama's layout
// with q/k/v fused into one qkv_proj and gate/up into one gate_up_proj in
// its checkpoints: Load splits them into the model's own projections (one
// Linear, one LoRA target each) and Save fuses them back
// (CheckpointTensors). Only the first head_dim·partial_rotary_factor
// dimensions of a head rotate. Its longrope rotates a sequence with the
// short factors up to original_max_position_embeddings tokens and with the
// long ones past it (each sequence by its own length, packed ones too),
// cos and sin scaled by the attention factor; generation stops there
// (Config.MaxLength), since transformers recomputes its whole cache with
// the long factors at that point.
//
// SmolLM3 (model_type smollm3) is Llama's layout with layers that do not
// rotate queries and keys at all (NoPE: no_rope_layers, by default every
// fourth; Config.LayerRope). OLMo 2 (olmo2) norms each block's output
// instead of its input, and norms the whole query and key projections
// before RoPE (Config.PostNorm). Granite (granite) scales the embedding,
// the attention scores, each block's output and the logits by its four
// multipliers.
//
// Loading and saving (any storage.Store is a Source and a Sink):
//
//	m, err := model.Load(ctx, store, "models/qwen2.5-0.5b") // config.json + *.safetensors
//	err = m.Save(ctx, store, "runs/x/sft/model", model.SaveOptions{DType: "BF16"})
//
// m.Ctx holds the weights as GoMLX variables named after the checkpoint's
// tensors ("model.layers.0.mlp.up_proj.weight" is variable "weight" in scope
// /model/layers/0/mlp/up_proj), so optimizers, checkpoints and adapters see
// the familiar names.
//
// The model as a graph, for training:
//
//	model.RegisterDotGeneralGradient() // once, before building gradients
//	logits := model.Forward(ctx, m.Config, tokens, positions, valid) // [B,T] int32, int32, bool → [B,T,V]
//	loss := model.CrossEntropy(logits, targets, weights)              // targets [B,T] int32, weights [B,T] float32
//
//	logits = model.ForwardSegments(ctx, m.Config, tokens, positions, segments) // packed rows: segments [B,T] int32, 0 = padding
//
// Adapters: every projection goes through Linear (q/k/v/o, gate/up/down and
// an untied lm_head), with ctx scoped at the module. Inside the graph
// function, before Forward:
//
//	model.UseAdapter(ctx, g, func(ctx *mlctx.Context, module string, x, y *Node) *Node {
//		return y + LoRA(x) when module is a target // module: "q_proj", "down_proj", …
//	})
//
// Mixed precision: model.UseComputeDType(ctx, g, dtypes.BFloat16) inside the
// graph function (gen.ComputeDType for sampling) runs every matrix product —
// the seven projections, lm_head, attention's q·kᵀ and p·v, and LoRA's
// two products through ComputeDot — in bf16: operands are cast down, the
// product is cast back to float32. The variables stay float32 masters
// (gradients flow through the casts into float32, so the optimizer and its
// moments are float32), and float32 stays everywhere else: embedding
// lookup, the residual stream, RMSNorm statistics and scale, RoPE angles
// and rotation, the attention mask and softmax, SwiGLU and the
// log-sum-exp loss. The default (no call) is all float32, what the CPU
// configuration ships. SimpleGo runs bf16 DotGeneral (accumulating in
// float32) and its gradient, but converts float32 to bfloat16 by truncation
// where XLA rounds to nearest, so bf16 on CPU is a slightly worse case of
// the GPU's numbers (precision_test.go states the tolerances).
//
// Logits(backend, m, seqs) runs one Forward over ragged sequences (checks,
// scoring); SGDStep is a plain full-weight SGD step (benchmarks, checks).
//
// Sampling:
//
//	gen, err := model.NewGenerator(backend, m)
//	res, err := gen.Generate([]model.Request{{Prompt: ids, Seed: 1}},
//		model.Sampling{Temperature: 1, TopP: 0.95, MaxNewTokens: 512, StopTokens: eos})
//
// The KV cache of a layer whose sliding window is shorter than the
// sequence is a ring of the window's length (Config.CacheLen).
//
// Backends come from package train/backend (SimpleGo on CPU by default,
// XLA with a PJRT plugin on GPU).
package model
