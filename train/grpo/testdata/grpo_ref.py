"""PyTorch reference of one GRPO mini-batch: the clipped surrogate loss and
its gradient with respect to every weight of the model core's decoder
(train/model/testdata/reference.py), or to the LoRA adapters when given
(train/sft/testdata/sft_ref.py's LoRAModel). With kl, each completion token's
loss also carries beta times the k3 estimate of the KL to a frozen reference
policy, computed as TRL's GRPOTrainer does: per_token_kl =
exp(ref_logp - logp) - (ref_logp - logp) - 1, the reference log-probabilities
from a forward pass without gradient of the reference model (the base
weights, adapters off, or the checkpoint at kl.ref_dir).

usage: /usr/bin/python3 grpo_ref.py CHECKPOINT_DIR in.json out.json
in:  rows of {tokens, prompt_len, old_logp (per target position), advantage},
     clip epsilon, optional lora {scale, adapters: {module: {A, B, shapes}}},
     optional kl {beta, ref_dir (null: CHECKPOINT_DIR)}
out: loss (mean over completion tokens), clipped token count, mean KL per
     completion token (0 without kl), and the gradient of every trained
     tensor, flattened.
"""
import json
import os
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "model", "testdata"))
sys.path.insert(0, os.path.join(here, "..", "..", "sft", "testdata"))
from sft_ref import LoRAModel  # noqa: E402  (reference.Model with y += scale·(x·Aᵀ)·Bᵀ)


def main():
    directory, inp, outp = sys.argv[1:4]
    req = json.load(open(inp))
    eps = req["epsilon"]
    adapters, scale = {}, 0.0
    lora = req.get("lora")
    if lora:
        scale = lora["scale"]
        for name, ab in lora["adapters"].items():
            a = torch.tensor(ab["a"], dtype=torch.float32).reshape(ab["a_shape"])
            b = torch.tensor(ab["b"], dtype=torch.float32).reshape(ab["b_shape"])
            adapters[name] = [a, b]
    m = LoRAModel(directory, adapters, scale)
    if lora:
        trained = {}
        for name, (a, b) in adapters.items():
            trained[name + ".lora_A"], trained[name + ".lora_B"] = a, b
    else:
        trained = m.w
    kl = req.get("kl")
    ref = None
    if kl:
        ref = LoRAModel(kl["ref_dir"] or directory, {}, 0.0)
    for t in trained.values():
        t.requires_grad_(True)

    def token_logps(model, row):
        logits = model.forward(torch.tensor([row["tokens"]]))[0][0]  # [T, V]
        logp = torch.log_softmax(logits, -1)
        targets = torch.tensor(row["tokens"][1:])
        lp = logp[:-1].gather(1, targets[:, None])[:, 0]     # position i predicts token i+1
        return lp[row["prompt_len"] - 1:]                    # completion targets only

    total, count, clipped, kl_sum = 0.0, 0, 0, 0.0
    for row in req["rows"]:
        lp = token_logps(m, row)
        old = torch.tensor(row["old_logp"], dtype=torch.float32)
        adv = row["advantage"]
        ratio = torch.exp(lp - old)
        surr = torch.min(ratio * adv, torch.clamp(ratio, 1 - eps, 1 + eps) * adv)
        per_token = -surr
        if kl:
            with torch.no_grad():
                ref_lp = token_logps(ref, row)
            per_token_kl = torch.exp(ref_lp - lp) - (ref_lp - lp) - 1
            per_token = per_token + kl["beta"] * per_token_kl
            kl_sum += per_token_kl.sum().item()
        total = total + per_token.sum()
        count += lp.shape[0]
        clipped += int(((adv > 0) & (ratio > 1 + eps)).sum() + ((adv < 0) & (ratio < 1 - eps)).sum())
    loss = total / count
    loss.backward()
    out = {"loss": loss.item(), "clipped": clipped, "kl": kl_sum / count,
           "grads": {k: v.grad.flatten().tolist() for k, v in trained.items()}}
    json.dump(out, open(outp, "w"))


if __name__ == "__main__":
    main()
