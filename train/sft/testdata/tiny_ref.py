"""PyTorch twin of the SFT trainer's tiny test model and optimizer loop.

Reads a JSON input (weights, config, the micro-batches of every step), trains
with torch.optim.AdamW (decoupled weight decay, no decay on names containing
a no_decay substring), Hugging Face's cosine-with-warm-up schedule as a
LambdaLR over optimizer steps, and clip_grad_norm_, and writes per-step loss
and grad norm and the weights after the second (first non-zero lr) and the last step.

usage: /usr/bin/python3 tiny_ref.py in.json out.json
"""
import json
import math
import sys

import torch


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
    for t in trained.values():
        t.requires_grad_(True)

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

    names = list(trained.keys())
    nd = [s.lower() for s in cfg["no_decay"]]
    decay = [n for n in names if cfg["weight_decay"] > 0 and not any(s in n.lower() for s in nd if s)]
    groups = [{"params": [trained[n] for n in names if n in decay], "weight_decay": cfg["weight_decay"]},
              {"params": [trained[n] for n in names if n not in decay], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["epsilon"])
    warm, total = cfg["warmup"], cfg["total"]

    def lam(step):
        if step < warm:
            return step / max(1, warm)
        prog = (step - warm) / max(1, total - warm)
        return max(0.0, 0.5 * (1 + math.cos(math.pi * prog)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lam)
    res = {"losses": [], "grad_norms": [], "lrs": []}
    for i, step in enumerate(cfg_all["steps"]):
        sums = [loss_sum(b) for b in step]
        n = sum(c for _, c in sums)
        loss = sum(s for s, _ in sums) / n
        opt.zero_grad()
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_([trained[k] for k in names], cfg["clip"]) if cfg["clip"] > 0 else None
        res["lrs"].append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        res["losses"].append(loss.item())
        res["grad_norms"].append(float(gn) if gn is not None else 0.0)
        snap = {k: v.detach().reshape(-1).tolist() for k, v in trained.items()}
        if i == 1:  # step 0 runs at lr 0
            res["after_first"] = snap
    res["final"] = snap
    json.dump(res, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
