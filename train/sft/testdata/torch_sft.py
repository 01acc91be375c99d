"""The SFT optimizer loop in PyTorch, shared by the reference scripts.

torch.optim.AdamW (decoupled weight decay except for names containing a
no_decay substring), Hugging Face's cosine schedule with warm-up as a
LambdaLR over optimizer steps, clip_grad_norm_, and gradient accumulation
where a step's loss is the mean over all its target tokens.
"""
import json
import math

import torch


def train(trained, cfg, steps, loss_sum):
    """trained: name -> leaf tensor; steps: lists of micro-batches;
    loss_sum(batch) -> (summed loss, target count). Returns per-step loss,
    grad norm and lr, and the trained tensors after step 2 and at the end."""
    for t in trained.values():
        t.requires_grad_(True)
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
    for i, step in enumerate(steps):
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
        if i == 1 or i == len(steps) - 1:  # step 1 runs at lr 0 (warm-up starts at zero)
            res["after_first" if i == 1 else "final"] = {k: v.detach().reshape(-1).tolist() for k, v in trained.items()}
    return res


def write(path, res):
    with open(path, "w") as f:
        json.dump(res, f)
