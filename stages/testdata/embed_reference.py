"""Reference embeddings for the local embedder: the final-norm hidden states
of train/model's PyTorch reference decoder, pooled in PyTorch.

usage: embed_reference.py CHECKPOINT_DIR REQUEST.json OUTPUT.json
REQUEST: {"prompts": [[ids...], ...]}
OUTPUT:  {"mean": [[...D] per prompt], "last": [[...D] per prompt]}
Each prompt runs alone (no padding, no batching).
"""
import importlib.util
import json
import os
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "reference", os.path.join(here, "..", "..", "train", "model", "testdata", "reference.py"))
reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reference)


def main():
    directory, request, output = sys.argv[1:4]
    with open(request) as f:
        req = json.load(f)
    m = reference.Model(directory)
    # An identity lm_head turns the reference's logits into the hidden
    # states after the final norm.
    d = m.cfg["hidden_size"]
    m.cfg["tie_word_embeddings"] = False
    m.w["lm_head.weight"] = torch.eye(d)
    out = {"mean": [], "last": []}
    with torch.no_grad():
        for prompt in req["prompts"]:
            hidden = m.forward(torch.tensor([prompt]))[0][0]  # [T, D]
            out["mean"].append(hidden.mean(0).tolist())
            out["last"].append(hidden[-1].tolist())
    with open(output, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
