#!/usr/bin/env python3
"""The PyTorch baseline of qshard_cuda_solver_bench, on the same GPU in the same session: GPTQ as
published (bench/gptq_torch.py's gptq(), the algorithm of IST-DASLab/gptq's GPTQ.fasterquant:
float32 H, chol → cholesky_inverse → chol, a Python loop over columns with lazy 128-column
blocks) with its tensors on the GPU, and the authors' statistics (GPTQ.add_batch per window:
H rescaled, one float32 GEMM into a new matrix, added; TF32 off). Same models, layer shapes,
2048-token windows, window counts, bits and group size as the C++ benchmark; timings from CUDA
synchronization around each step. With --json, one JSON object per layer on stdout and the table on stderr.

    python3 kernels/cuda/gptq_torch_cuda_bench.py --json [--model 0|1|2] [--windows N]
"""

import argparse
import datetime
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from gptq_torch import gptq  # noqa: E402  (the published algorithm, device-agnostic)

WINDOW_TOKENS = 2048
PAPER_WINDOWS = 128
# name, hidden, ffn, windows: as kModels in solver_bench.cu
MODELS = [("opt-1.3b", 2048, 8192, 32), ("opt-13b", 5120, 20480, 16), ("opt-175b", 12288, 49152, 4)]
LAYERS = [("attention", False, False), ("fc1", False, True), ("fc2", True, False)]


def timed(step):
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = step()
    torch.cuda.synchronize()
    return result, time.perf_counter() - start


def add_batch(H, nsamples, x):
    """GPTQ.add_batch for window number `nsamples` (x [tokens, cols], a linear layer's input): H
    stays 2/windows · Σ XᵀX (rescaled, then one float32 GEMM into a new matrix, then added)."""
    H *= nsamples / (nsamples + 1)
    inp = math.sqrt(2 / (nsamples + 1)) * x.t().float()
    H += inp.matmul(inp.t())


def bench_layer(cols, rows, windows, bits, group_size, act_order, generator):
    scale = torch.exp(3 * torch.rand(cols, device="cuda", generator=generator) - 1.5)
    H = torch.zeros(cols, cols, device="cuda")
    stats_s = 0.0
    for window in range(windows):
        x = torch.randn(WINDOW_TOKENS, cols, device="cuda", generator=generator) * scale
        _, seconds = timed(lambda: add_batch(H, window, x))
        stats_s += seconds
        del x
    W = 0.02 * torch.randn(rows, cols, device="cuda", generator=generator)
    _, solve_s = timed(lambda: gptq(W, H, bits, group_size, act_order))
    return stats_s / windows, solve_s


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--model", type=int, default=-1, help="0 opt-1.3b, 1 opt-13b, 2 opt-175b; -1 all")
    parser.add_argument("--windows", type=int, default=0, help="0: the model's default")
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=128)
    parser.add_argument("--act-order", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device for torch", file=sys.stderr)
        return 77
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 GEMMs, as the C++ solver's
    torch.backends.cudnn.allow_tf32 = False
    device = torch.cuda.get_device_name(0)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    table = sys.stderr if args.json else sys.stdout
    print(f"device: {device}, torch {torch.__version__}, {date}; {args.bits}-bit, group {args.group_size}, "
          f"act-order {'on' if args.act_order else 'off'}", file=table)
    print(f"{'model':9} {'layer':9} {'in':>6} {'out':>6} {'win':>4} {'stats_s/win':>12} {'solve_s':>9}", file=table)
    generator = torch.Generator(device="cuda")
    generator.manual_seed(0)
    status = 0
    with torch.no_grad():
        for index, (name, hidden, ffn, default_windows) in enumerate(MODELS):
            if args.model >= 0 and args.model != index:
                continue
            windows = args.windows or default_windows
            for layer, in_is_ffn, out_is_ffn in LAYERS:
                cols, rows = (ffn if in_is_ffn else hidden), (ffn if out_is_ffn else hidden)
                try:
                    stats_s, solve_s = bench_layer(cols, rows, windows, args.bits, args.group_size, args.act_order,
                                                   generator)
                except RuntimeError as error:  # out of memory on a smaller card (older torch: no OutOfMemoryError)
                    print(f"ERROR {name} {layer}: {error}", file=sys.stderr)
                    status = 2
                    break
                finally:
                    torch.cuda.empty_cache()
                print(f"{name:9} {layer:9} {cols:6} {rows:6} {windows:4} {stats_s:12.4f} {solve_s:9.3f}", file=table,
                      flush=True)
                if args.json:
                    print(json.dumps({"row": "torch-layer", "model": name, "layer": layer, "in": cols, "out": rows,
                                      "bits": args.bits, "group_size": args.group_size, "act_order": args.act_order,
                                      "window_tokens": WINDOW_TOKENS, "windows": windows,
                                      "stats_s_per_window": stats_s,
                                      "stats_s_128_windows": PAPER_WINDOWS * stats_s, "solve_s": solve_s,
                                      "torch": torch.__version__, "device": device, "date": date}), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
