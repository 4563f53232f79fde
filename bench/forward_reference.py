#!/usr/bin/python3
"""Forward throughput of the plain-PyTorch reference (tests/reference/forward/torch_reference.py)
on TinyStories-656K: windows of --seqlen tokens, --batch windows per call, --threads torch and
BLAS threads (torch_threads.py). The baseline for the C++ forward pass's tokens/s; run both on
the same machine and thread count (`qshard bench forward` does both in one run, with --json).

    /usr/bin/python3 bench/forward_reference.py --threads 2 --seqlen 512 --batch 4 --windows 40
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "reference", "forward"))
import torch_reference  # noqa: E402
from torch_threads import set_threads  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.path.join(REPO, "..", "shared", "data", "tinystories-656k"))
    parser.add_argument("--ids", default=os.path.join(REPO, "tests", "reference", "forward", "wikitext2_eval_head.i32"),
                        help="int32 token ids to cut into windows")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--windows", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args()

    blas = set_threads(args.threads)
    _, _, forward = torch_reference.load_model(args.model)
    ids = np.fromfile(args.ids, dtype="<i4").astype(np.int64)
    windows = min(args.windows, len(ids) // args.seqlen)
    batches = [torch.from_numpy(ids[s * args.seqlen:(s + n) * args.seqlen]).view(n, args.seqlen)
               for s in range(0, windows, args.batch) for n in [min(args.batch, windows - s)]]
    with torch.no_grad():
        forward(batches[0])  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            for x in batches:
                forward(x)
            best = min(best, time.perf_counter() - start)
    tokens = windows * args.seqlen
    if args.json:
        print(json.dumps({"tokens": tokens, "seconds": best, "tokens_per_second": tokens / best,
                          "threads": args.threads, "torch": torch.__version__, "blas": blas}))
        return
    print(f"torch {torch.__version__} forward (logits), {args.threads} threads, seqlen {args.seqlen}, "
          f"batch {args.batch}: {tokens} tokens in {best:.3f} s = {tokens / best:.0f} tokens/s")


if __name__ == "__main__":
    main()
