"""PyTorch side of bench/model/run.sh: the same checkpoint, batch and steps
as train/model's BenchmarkTrainStep and BenchmarkDecodeStep.

usage: torch_bench.py CHECKPOINT_DIR BATCH SEQ PROMPT NEW_TOKENS
prints: train_tokens_per_s=… decode_ms_per_step=…
"""
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "train", "model", "testdata"))
from reference import Model  # noqa: E402


def main():
    directory = sys.argv[1]
    batch, seq, prompt, new = (int(x) for x in sys.argv[2:6])
    torch.manual_seed(0)
    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", os.cpu_count())))
    m = Model(directory)
    vocab = m.cfg["vocab_size"]
    n = batch * seq
    idx = torch.arange(n)
    tokens = (idx * 31 % vocab).view(batch, seq)
    targets = (idx * 17 % vocab).view(batch, seq)
    params = list(m.w.values())
    for p in params:
        p.requires_grad_(True)

    def train_step():
        logits, _ = m.forward(tokens)
        loss = torch.nn.functional.cross_entropy(logits.reshape(n, vocab), targets.reshape(n))
        for p in params:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in params:
                p -= 1e-3 * p.grad

    train_step()  # warm-up
    steps, start = 0, time.perf_counter()
    while steps < 3 or time.perf_counter() - start < 10:
        train_step()
        steps += 1
    train_tps = n * steps / (time.perf_counter() - start)

    with torch.no_grad():
        prompts = (torch.arange(batch * prompt) * 7 % vocab).view(batch, prompt)
        _, cache = m.forward(prompts)
        nxt = torch.zeros(batch, 1, dtype=torch.long)
        logits, c = m.forward(nxt, cache)  # warm-up
        start = time.perf_counter()
        for _ in range(new - 1):
            logits, cache = m.forward(nxt, cache)
            logits.tolist()  # the host reads the logits every step, as the Go side does
        decode_ms = (time.perf_counter() - start) * 1000 / (new - 1)
    print(f"torch_threads={torch.get_num_threads()} train_tokens_per_s={train_tps:.1f} decode_ms_per_step={decode_ms:.2f}")


if __name__ == "__main__":
    main()
