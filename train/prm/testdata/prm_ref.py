"""PyTorch reference of RLHFlow's PRM step scores.

usage: prm_ref.py CHECKPOINT_DIR REQUEST.json OUTPUT.json
REQUEST: {"good": id, "bad": id, "conversations": [[[ids of the conversation
          cut after step k] for each step k] for each response]}
OUTPUT:  {"scores": [[P(good) for each step] for each response]}

As RLHFlow's own loop does, every step re-runs the conversation cut after
that step, and the score is the softmax over the good and bad tokens'
logits at position -3 (the last token of the assistant header; -2 is the
good token, -1 the end-of-turn token). The decoder is train/model's
reference transcription of Hugging Face's modeling code.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "model", "testdata"))
from reference import Model  # noqa: E402


def main():
    directory, request, output = sys.argv[1:4]
    with open(request) as f:
        req = json.load(f)
    m = Model(directory)
    good, bad = req["good"], req["bad"]
    out = {"scores": []}
    with torch.no_grad():
        for cuts in req["conversations"]:
            scores = []
            for ids in cuts:
                if ids[-2] != good:
                    raise ValueError(f"token -2 is {ids[-2]}, not the good token {good}")
                logits = m.forward(torch.tensor([ids]))[0][0, -3, [good, bad]]
                scores.append(float(logits.softmax(-1)[0]))
            out["scores"].append(scores)
    with open(output, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
