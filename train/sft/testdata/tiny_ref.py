"""PyTorch twin of the SFT trainer's tiny test model and optimizer loop.

Reads a JSON input (weights, config, the micro-batches of every step), trains
with torch_sft.train (AdamW, cosine with warm-up, clipping, accumulation) and
writes per-step loss and grad norm and the weights after step 2 (the first at
a non-zero lr) and at the end.

usage: /usr/bin/python3 tiny_ref.py in.json out.json
"""
import json
import sys

import torch

import torch_sft


def main():
    cfg_all = json.load(open(sys.argv[1]))
    cfg = cfg_all["config"]
    torch.manual_seed(0)
    p = {k: torch.tensor(v["data"], dtype=torch.float32).reshape(v["shape"])
         for k, v in cfg_all["weights"].items()}
    lora = cfg.get("lora_rank", 0)
    scale = cfg["lora_alpha"] / lora if lora else 0.0
    adapters = {}
    for mod, a in cfg_all.get("lora_a", {}).items():
        A = torch.tensor(a["data"], dtype=torch.float32).reshape(a["shape"])
        out = p[mod + ".weight"].shape[0]
        adapters[mod + ".lora_A"] = A
        adapters[mod + ".lora_B"] = torch.zeros(out, lora)
    if lora:
        trained = adapters
    else:
        trained = p

    def proj(name, x):
        y = x @ p[name + ".weight"].T
        if name + ".lora_A" in adapters:
            y = y + scale * ((x @ adapters[name + ".lora_A"].T) @ adapters[name + ".lora_B"].T)
        return y

    def loss_sum(b):
        tok = torch.tensor(b["tokens"]).reshape(b["rows"], b["len"]).long()
        tgt = torch.tensor(b["targets"]).reshape(b["rows"], b["len"]).long()
        w = torch.tensor(b["weights"], dtype=torch.float32).reshape(b["rows"], b["len"])
        h = p["embed_tokens.weight"][tok]
        u = proj("up_proj", h)
        h = h + proj("down_proj", u * torch.sigmoid(u))
        logits = h @ p["lm_head.weight"].T + p["lm_head_bias.weight"]
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), reduction="none")
        return (ce * w.reshape(-1)).sum(), int((w != 0).sum())

    torch_sft.write(sys.argv[2], torch_sft.train(trained, cfg, cfg_all["steps"], loss_sum))


if __name__ == "__main__":
    main()
