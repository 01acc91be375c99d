"""PyTorch reference of the SFT trainer on the model core's decoder.

Loads a Hugging Face checkpoint directory with train/model's reference
forward (train/model/testdata/reference.py), then trains it on the given
micro-batches with torch.optim.AdamW (decoupled weight decay except for
names containing a no_decay substring), Hugging Face's cosine schedule with
warm-up as a LambdaLR over optimizer steps, clip_grad_norm_ and gradient
accumulation (the loss of a step is the mean over all its target tokens).
With lora_rank > 0 only the adapters train: y = x·Wᵀ + (α/r)·(x·Aᵀ)·Bᵀ.

usage: /usr/bin/python3 sft_ref.py CHECKPOINT_DIR in.json out.json
out: per-step loss, grad norm and lr; the trained tensors after step 2 and
at the end.
"""
import math
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "model", "testdata"))
import reference  # noqa: E402


class LoRAModel(reference.Model):
    def __init__(self, directory, adapters, scale):
        super().__init__(directory)
        self.adapters, self.scale = adapters, scale

    def linear(self, x, name, bias):
        y = super().linear(x, name, bias)
        if name in self.adapters:
            a, b = self.adapters[name]
            y = y + self.scale * ((x @ a.T) @ b.T)
        return y


def main():
    directory, inp, outp = sys.argv[1:4]
    req = json.load(open(inp))
    cfg = req["config"]
    rank = cfg["lora_rank"]
    adapters = {}
    for name, a in req.get("lora_a", {}).items():
        A = torch.tensor(a["data"], dtype=torch.float32).reshape(a["shape"])
        adapters[name] = [A, None]
    m = LoRAModel(directory, adapters, cfg["lora_alpha"] / rank if rank else 0.0)
    for name in adapters:
        out_dim = m.w[name + ".weight"].shape[0]
        adapters[name][1] = torch.zeros(out_dim, rank)
    if rank:
        trained = {}
        for name, (a, b) in adapters.items():
            trained[name + ".lora_A"], trained[name + ".lora_B"] = a, b
    else:
        trained = m.w
    for t in trained.values():
        t.requires_grad_(True)

    def loss_sum(b):
        total, count = 0.0, 0
        for r in range(b["rows"]):
            lo, hi = r * b["len"], (r + 1) * b["len"]
            seg = b["segments"][lo:hi]
            n = sum(1 for s in seg if s != 0)
            if n == 0:
                continue
            logits = m.forward(b["tokens"][lo:lo + n])
            tgt = torch.tensor(b["targets"][lo:lo + n]).long()
            w = torch.tensor(b["weights"][lo:lo + n], dtype=torch.float32)
            ce = torch.nn.functional.cross_entropy(logits, tgt, reduction="none")
            total = total + (ce * w).sum()
            count += int((w != 0).sum())
        return total, count

    names = list(trained.keys())
    nd = [s.lower() for s in cfg["no_decay"] if s]
    decay = [n for n in names if cfg["weight_decay"] > 0 and not any(s in n.lower() for s in nd)]
    groups = [{"params": [trained[n] for n in names if n in decay], "weight_decay": cfg["weight_decay"]},
              {"params": [trained[n] for n in names if n not in decay], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["epsilon"])
    warm, total = cfg["warmup"], cfg["total"]

    def lam(step):
        if step < warm:
            return step / max(1, warm)
        return max(0.0, 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lam)
    res = {"losses": [], "grad_norms": [], "lrs": []}
    for i, step in enumerate(req["steps"]):
        sums = [loss_sum(b) for b in step]
        n = sum(c for _, c in sums)
        loss = sum(s for s, _ in sums) / n
        opt.zero_grad()
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_([trained[k] for k in names], cfg["clip"])
        res["lrs"].append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        res["losses"].append(loss.item())
        res["grad_norms"].append(float(gn))
        if i == 1 or i == len(req["steps"]) - 1:
            snap = {k: v.detach().reshape(-1).tolist() for k, v in trained.items()}
            res["after_first" if i == 1 else "final"] = snap
    json.dump(res, open(outp, "w"))


if __name__ == "__main__":
    main()
