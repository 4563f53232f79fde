#!/usr/bin/python3
"""GPTQ as published (Frantar et al., ICLR 2023; ../shared/anchors.md §1.1), in plain PyTorch on
the CPU: the baseline `qshard bench gptq` times its C++ solver against, on the same W and H.

Inputs are raw little-endian float32 files: the weight W [rows, cols] and the proxy Hessian
H = 2·XXᵀ/n [cols, cols]. The algorithm: dead columns (diag(H) = 0) get H[c,c] = 1 and W[:,c] = 0;
optional act-order (columns by descending diag(H)); damping of percdamp · mean(diag(H));
U = chol(cholesky_inverse(chol(H)), upper); lazy blocks of 128 columns; per-row asymmetric
min-max grids, per channel or per group of --group-size columns (fitted when the sweep reaches
the group, on W as it stands then). Prints one JSON object: the median and all timings of the
solve (H and W already in memory) and, with --out, writes the dequantized result there.

    /usr/bin/python3 bench/gptq_torch.py --weight W.f32 --hessian H.f32 --rows 768 --cols 768 \
        --bits 4 --group-size 128 --threads 2 --repeats 3 --out Q.f32
"""

import argparse
import json
import statistics
import time

import numpy as np
import torch

from torch_threads import set_threads


def fit_grid(w, maxq):
    """Per-row asymmetric min-max grid of w [rows, n]: (scale, zero), each [rows, 1]."""
    xmin = torch.clamp(w.min(dim=1).values, max=0)
    xmax = torch.clamp(w.max(dim=1).values, min=0)
    flat = (xmin == 0) & (xmax == 0)
    xmin[flat], xmax[flat] = -1, 1
    scale = (xmax - xmin) / maxq
    zero = torch.round(-xmin / scale)
    return scale.unsqueeze(1), zero.unsqueeze(1)


def quantize(x, scale, zero, maxq):
    return scale * (torch.clamp(torch.round(x / scale) + zero, 0, maxq) - zero)


def gptq(weight, hessian, bits, group_size, act_order, block_size=128, percdamp=0.01):
    """The dequantized GPTQ result for weight [rows, cols] and Hessian [cols, cols]."""
    W = weight.clone()
    H = hessian.clone()
    cols = W.shape[1]
    maxq = 2**bits - 1
    scale, zero = fit_grid(W, maxq)  # per channel: fitted before dead columns are zeroed

    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    if act_order:
        perm = torch.argsort(torch.diag(H), descending=True)
        W, H = W[:, perm], H[perm][:, perm]

    diag = torch.arange(cols)
    H[diag, diag] += percdamp * torch.mean(torch.diag(H))
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)

    Q = torch.zeros_like(W)
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        W1 = W[:, i1:i2].clone()
        Err1 = torch.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        for i in range(i2 - i1):
            if group_size > 0 and (i1 + i) % group_size == 0:
                scale, zero = fit_grid(W[:, i1 + i:i1 + i + group_size], maxq)
            w = W1[:, i]
            q = quantize(w.unsqueeze(1), scale, zero, maxq).flatten()
            Q[:, i1 + i] = q
            err = (w - q) / U1[i, i]
            W1[:, i:] -= err.unsqueeze(1).matmul(U1[i, i:].unsqueeze(0))
            Err1[:, i] = err
        W[:, i2:] -= Err1.matmul(U[i1:i2, i2:])

    if act_order:
        Q = Q[:, torch.argsort(perm)]
    return Q


def read_matrix(path, rows, cols):
    data = np.fromfile(path, dtype="<f4")
    if data.size != rows * cols:
        raise SystemExit(f"{path}: {data.size} floats, expected {rows}x{cols}")
    return torch.from_numpy(data.reshape(rows, cols))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weight", required=True)
    parser.add_argument("--hessian", required=True)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--cols", type=int, required=True)
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=-1)
    parser.add_argument("--act-order", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="write the dequantized weight here (raw float32)")
    args = parser.parse_args()

    blas = set_threads(args.threads)
    W = read_matrix(args.weight, args.rows, args.cols)
    H = read_matrix(args.hessian, args.cols, args.cols)
    seconds = []
    with torch.no_grad():
        for _ in range(args.repeats):
            start = time.perf_counter()
            Q = gptq(W, H, args.bits, args.group_size, args.act_order)
            seconds.append(time.perf_counter() - start)
    if args.out:
        Q.numpy().astype("<f4").tofile(args.out)
    print(json.dumps({"seconds": statistics.median(seconds), "all_seconds": seconds,
                      "threads": args.threads, "torch": torch.__version__, "blas": blas}))


if __name__ == "__main__":
    main()
