#!/usr/bin/env python3
"""Evaluation tokens/s through each method's kernels against the fp32 model (docs/results.md,
"Every method side by side").

Makes a synthetic OPT-1.3B-shaped model (`make-synthetic --preset opt-1.3b --layers N`, fp32),
quantizes it with each method at the widths it supports, and times `qshard eval` of every
checkpoint on the same windows in the same run: GPTQ-layout checkpoints through the exact
(fp32 activations x packed codes) and int8-activation kernels, FlattenQuant through its
per-tensor W8A8/W4A4 kernels, the fp32 model through BLAS. The LM head (50272 x 2048) stays
fp32 in every row, so the ratios are of whole-model evaluation, not of the linears alone.

Example (the command behind docs/results.md):
  bench/method_speed.py --qshard build/tools/qshard/qshard --work build/method-speed --layers 4
"""
import argparse
import json
import os
import subprocess
import sys

TEXT = "../shared/data/wikitext-2-raw/wiki.test.raw"


def run(args, log):
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{result.stderr}")
    log.write(result.stderr)
    return result.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qshard", required=True)
    parser.add_argument("--work", required=True, help="folder for the model and checkpoints")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--windows", type=int, default=4, help="eval windows of --seqlen tokens")
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    a = parser.parse_args()
    os.makedirs(a.work, exist_ok=True)
    log = open(os.path.join(a.work, "log.txt"), "a")
    base = os.path.join(a.work, "opt-1.3b")
    if not os.path.exists(os.path.join(base, "config.json")):
        run([a.qshard, "make-synthetic", "--preset", "opt-1.3b", "--layers", str(a.layers), "--dtype", "f32",
             "--out", base], log)
    calibration = ["--calib-text", TEXT, "--calib-lines", "1-2179", "--nsamples", "8", "--seqlen", "256"]
    jobs = [  # (row name, method flags, eval kernels)
        ("rtn W4 g128", ["--method", "rtn", "--bits", "4", "--group-size", "128"], ["exact", "int8"]),
        ("gptq W4 g128", ["--method", "gptq", "--bits", "4", "--group-size", "128"] + calibration, ["exact", "int8"]),
        ("finequant W4", ["--method", "finequant", "--bits", "4", "--group-size", "-1"], ["exact", "int8"]),
        ("rtn W8", ["--method", "rtn", "--bits", "8"], ["exact", "int8"]),
        ("flattenquant W8A8", ["--method", "flattenquant", "--bits", "8"] + calibration, ["exact"]),
        ("flattenquant W4A4/W8A8", ["--method", "flattenquant", "--bits", "4"] + calibration, ["exact"]),
    ]
    evaluate = ["eval", "--text", TEXT, "--lines", "2180-4358", "--seqlen", str(a.seqlen), "--max-windows",
                str(a.windows), "--threads", str(a.threads), "--json"]
    rows = [("fp32", "blas", json.loads(run([a.qshard] + evaluate + ["--model", base], log)))]
    for name, flags, kernels in jobs:
        out = os.path.join(a.work, name.replace(" ", "-").replace("/", "-"))
        if not os.path.exists(os.path.join(out, "config.json")):
            run([a.qshard, "quantize", "--model", base, "--out", out, "--threads", str(a.threads)] + flags, log)
        for k in kernels:
            # Timed alone: with --base, eval also runs the fp32 model, and its time would count.
            timed = json.loads(run([a.qshard] + evaluate + ["--model", out, "--kernels", k], log))
            judged = json.loads(run([a.qshard] + evaluate + ["--model", out, "--kernels", k, "--base", base], log))
            judged["tokens_per_second"] = timed["tokens_per_second"]
            rows.append((name, k, judged))
    fp32 = rows[0][2]["tokens_per_second"]
    print(f"| checkpoint | kernels | tokens/s | vs fp32 | KL vs fp32 | top-1 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, kernels, r in rows:
        kl = r.get("kl_divergence")
        top1 = r.get("top1_agreement")
        print(f"| {name} | {kernels} | {r['tokens_per_second']:.0f} | {r['tokens_per_second'] / fp32:.2f} | "
              f"{'-' if kl is None else f'{kl:.4f}'} | {'-' if top1 is None else f'{top1:.3f}'} |")


if __name__ == "__main__":
    main()
