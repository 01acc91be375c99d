"""PyTorch reference of the SFT trainer on the model core's decoder.

Loads a Hugging Face checkpoint directory with train/model's reference
forward (train/model/testdata/reference.py), then trains it on the given
micro-batches with torch_sft.train (AdamW, cosine with warm-up, clipping,
accumulation).
With lora_rank > 0 only the adapters train: y = x·Wᵀ + (α/r)·(x·Aᵀ)·Bᵀ.

usage: /usr/bin/python3 sft_ref.py CHECKPOINT_DIR in.json out.json
out: per-step loss, grad norm and lr; the trained tensors after step 2 and
at the end.
"""
import json
import os
import sys

import torch

import torch_sft

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

    def loss_sum(b):
        total, count = 0.0, 0
        for r in range(b["rows"]):
            lo, hi = r * b["len"], (r + 1) * b["len"]
            seg = b["segments"][lo:hi]
            n = sum(1 for s in seg if s != 0)
            if n == 0:
                continue
            logits = m.forward(torch.tensor([b["tokens"][lo:lo + n]]))[0][0]
            tgt = torch.tensor(b["targets"][lo:lo + n]).long()
            w = torch.tensor(b["weights"][lo:lo + n], dtype=torch.float32)
            ce = torch.nn.functional.cross_entropy(logits, tgt, reduction="none")
            total = total + (ce * w).sum()
            count += int((w != 0).sum())
        return total, count

    torch_sft.write(outp, torch_sft.train(trained, cfg, req["steps"], loss_sum))


if __name__ == "__main__":
    main()
