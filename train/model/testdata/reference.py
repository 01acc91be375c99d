"""Reference forward of Hugging Face's Llama / Mistral / Qwen2 / Qwen3 / Gemma 2 / Gemma 3 /
Phi-3 / SmolLM3 / OLMo 2 / Granite decoder in plain PyTorch.

A faithful transcription of transformers' modeling_llama.py / modeling_mistral.py /
modeling_qwen2.py / modeling_qwen3.py / modeling_gemma2.py / modeling_gemma3.py
(Gemma3ForCausalLM) / modeling_phi3.py (fused qkv_proj and gate_up_proj, partial
rotary, longrope with its switch to the long factors past the original context) /
modular_smollm3.py (NoPE layers) / modeling_olmo2.py (norms after each block, q/k norms
over all heads) / modeling_granite.py (embedding, attention, residual and logits multipliers)
(eager attention, float32) that reads a checkpoint directory written in HF
layout (config.json + model.safetensors, or shards with
model.safetensors.index.json) without the transformers or
safetensors packages, which Debian does not ship.

usage: reference.py CHECKPOINT_DIR REQUEST.json OUTPUT.json
REQUEST: {"prompts": [[ids...], ...], "greedy_steps": N}
OUTPUT:  {"logits": [[[...V] per prompt position] per prompt],
          "greedy": [[ids] per prompt], "margins": [[top1-top2] per step]}
Each prompt runs alone (no padding); greedy decoding re-runs the full
sequence at every step (no cache), as the slow reference path would.
"""
import json
import math
import os
import struct
import sys

import torch


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = bytearray(data[begin:end])
        if info["dtype"] == "F32":
            t = torch.frombuffer(raw, dtype=torch.float32)
        elif info["dtype"] == "BF16":
            t = (torch.frombuffer(raw, dtype=torch.int16).to(torch.int32) << 16).view(torch.float32)
        elif info["dtype"] == "F16":
            t = torch.frombuffer(raw, dtype=torch.float16).float()
        else:
            raise ValueError(f"{path}: tensor {name}: dtype {info['dtype']}")
        out[name] = t.reshape(info["shape"]).clone()
    return out


def read_weights(directory):
    """model.safetensors, or every shard model.safetensors.index.json lists."""
    index = os.path.join(directory, "model.safetensors.index.json")
    if not os.path.exists(index):
        return read_safetensors(os.path.join(directory, "model.safetensors"))
    with open(index) as f:
        weight_map = json.load(f)["weight_map"]
    out = {}
    for shard in sorted(set(weight_map.values())):
        tensors = read_safetensors(os.path.join(directory, shard))
        for name, t in tensors.items():
            if weight_map.get(name) != shard:
                raise ValueError(f"{shard}: tensor {name} is not listed for it in {index}")
        out.update(tensors)
    if set(out) != set(weight_map):
        raise ValueError(f"{index}: lists {sorted(set(weight_map) - set(out))}, not in any shard")
    return out


def rope_inv_freq(cfg, dim, base, rs, long=False):
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    rs = rs or {}
    if rs.get("rope_type", rs.get("type")) == "longrope":
        ext = torch.tensor(rs["long_factor"] if long else rs["short_factor"], dtype=torch.float32)
        inv_freq = 1.0 / (ext * base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    if rs.get("rope_type", rs.get("type")) == "linear":
        inv_freq = inv_freq / rs["factor"]
    if rs.get("rope_type", rs.get("type")) == "llama3":
        factor = rs["factor"]
        low, high = rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        low_wavelen, high_wavelen = old / low, old / high
        wavelen = 2 * math.pi / inv_freq
        inv_freq_llama = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * inv_freq_llama / factor + smooth * inv_freq_llama
        medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
        inv_freq = torch.where(medium, smoothed, inv_freq_llama)
    return inv_freq


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


class Model:
    def __init__(self, directory):
        with open(f"{directory}/config.json") as f:
            self.cfg = json.load(f)
        self.w = read_weights(directory)
        c = self.cfg
        self.heads = c["num_attention_heads"]
        self.kv_heads = c.get("num_key_value_heads") or self.heads
        self.head_dim = c.get("head_dim") or c["hidden_size"] // self.heads
        if c["model_type"] == "phi3":
            # Held as the parts of Phi-3's fused qkv_proj and gate_up_proj,
            # so that a trainer can name them as the Go model does; forward
            # fuses them back and computes as Phi3Attention and Phi3MLP do.
            qn, kn = self.heads * self.head_dim, self.kv_heads * self.head_dim
            for i in range(c["num_hidden_layers"]):
                p = f"model.layers.{i}."
                qkv = self.w.pop(p + "self_attn.qkv_proj.weight")
                self.w[p + "self_attn.q_proj.weight"] = qkv[:qn].clone()
                self.w[p + "self_attn.k_proj.weight"] = qkv[qn:qn + kn].clone()
                self.w[p + "self_attn.v_proj.weight"] = qkv[qn + kn:].clone()
                gate, up = self.w.pop(p + "mlp.gate_up_proj.weight").chunk(2, dim=0)
                self.w[p + "mlp.gate_proj.weight"], self.w[p + "mlp.up_proj.weight"] = gate.clone(), up.clone()
        self.eps = c["rms_norm_eps"]
        self.qkv_bias = c["model_type"] == "qwen2" or c.get("attention_bias", False)
        self.o_bias = c.get("attention_bias", False)
        mt = c["model_type"]
        self.gemma = mt in ("gemma2", "gemma3_text")
        n = c["num_hidden_layers"]
        # Each layer's type as the config classes decide it: layer_types if
        # given; else Mistral windows every layer (sliding_window defaults to
        # 4096; null: none), Qwen the layers from max_window_layers on when
        # use_sliding_window, Gemma2 the even layers, Gemma3 all but every
        # sliding_window_pattern-th (default 6).
        # SmolLM3's no_rope_layers: 1 rotates, 0 is a NoPE layer; by default
        # every no_rope_layer_interval-th layer (4).
        self.use_rope = [1] * n
        if mt == "smollm3":
            interval = c.get("no_rope_layer_interval", 4)
            self.use_rope = c.get("no_rope_layers") or [int((i + 1) % interval != 0) for i in range(n)]
        types = c.get("layer_types")
        if types is None:
            if mt == "mistral":
                types = ["sliding_attention" if c.get("sliding_window", 4096) is not None else "full_attention"] * n
            elif mt == "smollm3":  # SmolLM3Config: NoPE layers are the windowed ones
                types = ["sliding_attention" if c.get("use_sliding_window") and c.get("sliding_window") is not None
                         and not self.use_rope[i] else "full_attention" for i in range(n)]
            elif mt == "phi3":  # Phi3Config's sliding_window defaults to None
                types = ["sliding_attention" if c.get("sliding_window") is not None else "full_attention"] * n
            elif mt in ("qwen2", "qwen3"):
                types = ["sliding_attention" if c.get("use_sliding_window") and i >= c.get("max_window_layers", 0)
                         else "full_attention" for i in range(n)]
            elif mt == "gemma2":
                types = ["sliding_attention" if not bool(i % 2) else "full_attention" for i in range(n)]
            elif mt == "gemma3_text":
                pattern = c.get("sliding_window_pattern", 6)
                types = ["sliding_attention" if bool((i + 1) % pattern) else "full_attention" for i in range(n)]
            else:
                types = ["full_attention"] * n
        self.windows = [c.get("sliding_window", 4096) if t == "sliding_attention" else None for t in types]
        theta = c.get("rope_theta", 2000000.0 if mt == "smollm3" else 10000.0)
        self.rotary_dim = int(self.head_dim * c.get("partial_rotary_factor", 1.0))
        rs = c.get("rope_scaling") or {}
        global_freq = rope_inv_freq(c, self.rotary_dim, theta, rs)
        if mt == "gemma3_text":
            local_freq = rope_inv_freq(c, self.head_dim, c.get("rope_local_base_freq", 10000.0), None)
            self.inv_freq = [local_freq if t == "sliding_attention" else global_freq for t in types]
        else:
            self.inv_freq = [global_freq] * n
        # longrope (modeling_rope_utils): past the original context every
        # position rotates with the long factors (dynamic_rope_update), and
        # cos and sin are scaled by the attention factor.
        self.long_freq, self.rope_scale, self.long_from = None, 1.0, None
        if rs.get("rope_type", rs.get("type")) == "longrope":
            self.long_freq = rope_inv_freq(c, self.rotary_dim, theta, rs, long=True)
            if "original_max_position_embeddings" in c:
                orig = c["original_max_position_embeddings"]
                factor = c["max_position_embeddings"] / orig
            else:
                orig, factor = c["max_position_embeddings"], rs.get("factor")
            self.long_from = orig
            self.rope_scale = rs.get("attention_factor")
            if self.rope_scale is None:
                self.rope_scale = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(orig))
        self.olmo2, self.granite = mt == "olmo2", mt == "granite"
        self.residual_multiplier = c.get("residual_multiplier", 1.0) if self.granite else 1.0
        if self.gemma:
            self.scaling = c.get("query_pre_attn_scalar", 256) ** -0.5
        elif self.granite:  # GraniteAttention: scaling = attention_multiplier
            self.scaling = c.get("attention_multiplier", 1.0)
        else:
            self.scaling = self.head_dim**-0.5

    def rms(self, x, name):
        if self.gemma:  # Gemma2RMSNorm / Gemma3RMSNorm
            out = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
            return out * (1.0 + self.w[name])
        variance = x.pow(2).mean(-1, keepdim=True)
        return self.w[name] * (x * torch.rsqrt(variance + self.eps))

    def linear(self, x, name, bias):
        return torch.nn.functional.linear(x, self.w[name + ".weight"], self.w[name + ".bias"] if bias else None)

    def forward(self, ids, cache=None):
        """Logits [B, T, V] for ids [B, T] (a tensor) continuing the sequences
        held in cache (a list of per-layer (k, v), as HF's DynamicCache), or
        from position 0 when cache is None. Returns (logits, new cache)."""
        b, t = ids.shape
        start = 0 if cache is None else cache[0][0].shape[2]
        x = self.w["model.embed_tokens.weight"][ids]
        if self.gemma:  # Gemma3TextScaledWordEmbedding / Gemma2's normalizer
            x = x * torch.tensor(self.cfg["hidden_size"] ** 0.5, dtype=x.dtype)
        if self.granite:
            x = x * self.cfg.get("embedding_multiplier", 1.0)
        pos = torch.arange(start, start + t).float()[None, :]
        # masking_utils: causal_mask_function (kv_idx <= q_idx), and with a
        # window sliding_window_overlay (kv_idx > q_idx - sliding_window).
        q_idx = torch.arange(start, start + t)[:, None]
        kv_idx = torch.arange(start + t)[None, :]

        def mask_for(window):
            allowed = kv_idx <= q_idx
            if window is not None:
                allowed = allowed & (kv_idx > q_idx - window)
            return torch.zeros(t, start + t).masked_fill(~allowed, torch.finfo(torch.float32).min)[None, None]

        groups = self.heads // self.kv_heads
        new_cache = []
        for i in range(self.cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            inv = self.inv_freq[i]
            if self.long_freq is not None and start + t > self.long_from:
                inv = self.long_freq
            freqs = (inv[None, :, None] @ pos[:, None, :]).transpose(1, 2)
            emb = torch.cat((freqs, freqs), dim=-1)
            cos, sin = emb.cos()[:, None] * self.rope_scale, emb.sin()[:, None] * self.rope_scale
            mask = mask_for(self.windows[i])
            residual = x
            h = x if self.olmo2 else self.rms(x, p + "input_layernorm.weight")
            if self.cfg["model_type"] == "phi3":  # Phi3Attention: one fused projection
                a = p + "self_attn."
                fused = torch.cat([self.w[a + "q_proj.weight"], self.w[a + "k_proj.weight"], self.w[a + "v_proj.weight"]])
                qkv = torch.nn.functional.linear(h, fused)
                qn, kn = self.heads * self.head_dim, self.kv_heads * self.head_dim
                q, k, v = qkv[..., :qn], qkv[..., qn:qn + kn], qkv[..., qn + kn:]
            else:
                q = self.linear(h, p + "self_attn.q_proj", self.qkv_bias)
                k = self.linear(h, p + "self_attn.k_proj", self.qkv_bias)
                v = self.linear(h, p + "self_attn.v_proj", self.qkv_bias)
            if self.olmo2:  # Olmo2Attention: q_norm and k_norm over the whole projections
                q = self.rms(q, p + "self_attn.q_norm.weight")
                k = self.rms(k, p + "self_attn.k_norm.weight")
            q, k, v = (x.reshape(b, t, -1, self.head_dim).transpose(1, 2) for x in (q, k, v))
            if self.cfg["model_type"] in ("qwen3", "gemma3_text"):
                q = self.rms(q, p + "self_attn.q_norm.weight")
                k = self.rms(k, p + "self_attn.k_norm.weight")
            if self.use_rope[i]:
                rd = cos.shape[-1]  # Phi-3's partial rotary: the rest pass through
                q = torch.cat((q[..., :rd] * cos + rotate_half(q[..., :rd]) * sin, q[..., rd:]), dim=-1)
                k = torch.cat((k[..., :rd] * cos + rotate_half(k[..., :rd]) * sin, k[..., rd:]), dim=-1)
            if cache is not None:
                k = torch.cat((cache[i][0], k), dim=2)
                v = torch.cat((cache[i][1], v), dim=2)
            new_cache.append((k, v))
            s = k.shape[2]
            k = k[:, :, None].expand(b, self.kv_heads, groups, s, self.head_dim).reshape(b, self.heads, s, self.head_dim)
            v = v[:, :, None].expand(b, self.kv_heads, groups, s, self.head_dim).reshape(b, self.heads, s, self.head_dim)
            scores = q @ k.transpose(2, 3) * self.scaling
            cap = self.cfg.get("attn_logit_softcapping") if self.gemma else None
            if cap is not None:
                scores = torch.tanh(scores / cap) * cap
            scores = scores + mask
            probs = torch.softmax(scores, dim=-1, dtype=torch.float32)
            a = self.linear((probs @ v).transpose(1, 2).reshape(b, t, -1), p + "self_attn.o_proj", self.o_bias)
            mlp_bias = self.cfg.get("mlp_bias", False)
            if self.gemma:
                x = residual + self.rms(a, p + "post_attention_layernorm.weight")
                h = self.rms(x, p + "pre_feedforward_layernorm.weight")
                act = lambda g: torch.nn.functional.gelu(g, approximate="tanh")  # gelu_pytorch_tanh
            elif self.olmo2:  # Olmo2DecoderLayer
                x = residual + self.rms(a, p + "post_attention_layernorm.weight")
                h = x
                act = torch.nn.functional.silu
            else:
                x = residual + a * self.residual_multiplier
                h = self.rms(x, p + "post_attention_layernorm.weight")
                act = torch.nn.functional.silu
            if self.cfg["model_type"] == "phi3":  # Phi3MLP: gate_up_proj, gate first
                fused = torch.cat([self.w[p + "mlp.gate_proj.weight"], self.w[p + "mlp.up_proj.weight"]])
                gate, up = torch.nn.functional.linear(h, fused).chunk(2, dim=-1)
            else:
                gate = self.linear(h, p + "mlp.gate_proj", mlp_bias)
                up = self.linear(h, p + "mlp.up_proj", mlp_bias)
            m = self.linear(act(gate) * up, p + "mlp.down_proj", mlp_bias)
            if self.gemma or self.olmo2:
                m = self.rms(m, p + "post_feedforward_layernorm.weight")
            x = x + m * self.residual_multiplier
        x = self.rms(x, "model.norm.weight")
        # PretrainedConfig ties by default; LlamaConfig, Qwen2Config and Phi3Config do not.
        tied = self.cfg.get("tie_word_embeddings", self.gemma or self.cfg["model_type"] == "smollm3")
        head = self.w["model.embed_tokens.weight"] if tied else self.w["lm_head.weight"]
        logits = x @ head.T
        if self.granite:
            logits = logits / self.cfg.get("logits_scaling", 1.0)
        cap = self.cfg.get("final_logit_softcapping") if self.gemma else None
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        return logits, new_cache


def main():
    directory, request, output = sys.argv[1:4]
    with open(request) as f:
        req = json.load(f)
    m = Model(directory)
    out = {"logits": [], "greedy": [], "margins": []}
    with torch.no_grad():
        for prompt in req["prompts"]:
            out["logits"].append(m.forward(torch.tensor([prompt]))[0][0].tolist())
            seq, greedy, margins = list(prompt), [], []
            for _ in range(req["greedy_steps"]):
                last = m.forward(torch.tensor([seq]))[0][0, -1]
                top = torch.topk(last, 2)
                greedy.append(int(top.indices[0]))
                margins.append(float(top.values[0] - top.values[1]))
                seq.append(greedy[-1])
            out["greedy"].append(greedy)
            out["margins"].append(margins)
    with open(output, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
