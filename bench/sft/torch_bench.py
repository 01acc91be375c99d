"""PyTorch side of bench/sft/run.sh: SFT optimizer steps on the checkpoint
train/sft's BenchmarkSFTStep wrote, with the same batch and recipe (AdamW,
weight decay 0.1 except norms and biases, clip 0.3; LoRA r16 α32 on all
seven projections, adapters only).

usage: torch_bench.py full|lora CHECKPOINT_DIR ROWS LEN
prints: torch_threads=… tokens_per_s=… peak_mib=…
"""
import os
import resource
import sys
import time

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "train", "model", "testdata"))
sys.path.insert(0, os.path.join(here, "..", "..", "train", "sft", "testdata"))
from sft_ref import LoRAModel  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main():
    mode, directory = sys.argv[1], sys.argv[2]
    rows, length = int(sys.argv[3]), int(sys.argv[4])
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count())
    m = LoRAModel(directory, {}, 2.0)
    vocab = m.cfg["vocab_size"]
    if mode == "lora":
        rank = 16
        for name in m.w:
            if name.endswith(".weight") and name.split(".")[-2] in TARGETS:
                out_dim, in_dim = m.w[name].shape
                a = (torch.rand(rank, in_dim) * 2 - 1) / in_dim**0.5
                m.adapters[name[: -len(".weight")]] = [a, torch.zeros(out_dim, rank)]
        trained = {}
        for k, (a, b) in m.adapters.items():
            trained[k + ".lora_A"], trained[k + ".lora_B"] = a, b
    else:
        trained = m.w
    for t in trained.values():
        t.requires_grad_(True)
    decay = [t for k, t in trained.items() if "norm" not in k and "bias" not in k]
    rest = [t for k, t in trained.items() if "norm" in k or "bias" in k]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}], lr=1e-4)
    n = rows * length
    idx = torch.arange(n)
    tokens = (idx * 31 % vocab).view(rows, length)
    targets = (idx * 17 % vocab).view(rows, length)

    def step():
        logits, _ = m.forward(tokens)
        loss = torch.nn.functional.cross_entropy(logits.reshape(n, vocab), targets.reshape(n))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(trained.values()), 0.3)
        opt.step()

    step()  # warm-up
    steps, start = 0, time.perf_counter()
    while steps < 3 or time.perf_counter() - start < 10:
        step()
        steps += 1
    tps = n * steps / (time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"torch_threads={torch.get_num_threads()} tokens_per_s={tps:.1f} peak_mib={peak:.0f}")


if __name__ == "__main__":
    main()
