#!/usr/bin/env python3
"""FineQuant against RTN at uniform group sizes (docs/results.md, "FineQuant").

For every model, bit width and configuration (RTN at each --rtn-groups size, FineQuant from
per channel) it runs `qshard quantize`, measures the stored bits per quantized weight from the
checkpoint (qweight + qzeros + scales; g_idx left out, it is the same for every group size),
reads the chosen group sizes from config.json (quantization_config.group_size and .dynamic),
and runs `qshard eval --base` on the WikiText-2 evaluation half. One JSON object per row goes
to --out (resuming: rows already there are skipped); --markdown prints the table.

Example (the commands behind docs/results.md):
  build/tools/qshard/qshard make-synthetic --preset opt-125m --layers 2 --weight-outliers \
      --dtype f32 --out build/opt-125m-2l-outliers
  bench/finequant_table.py --out build/finequant.jsonl \
      --model tinystories-656k=../shared/data/tinystories-656k:64 \
      --model synthetic-opt-125m-2l=build/opt-125m-2l-outliers:16
  bench/finequant_table.py --out build/finequant.jsonl --markdown
"""
import collections
import json
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from quality_table import TEXTS, common_arguments, run, without_text  # noqa: E402

TEXT = "wikitext2-eval-half"


def safetensors_headers(model_dir):
    names = sorted(f for f in os.listdir(model_dir) if f.endswith(".safetensors"))
    for name in names:
        with open(os.path.join(model_dir, name), "rb") as f:
            size = struct.unpack("<Q", f.read(8))[0]
            yield json.loads(f.read(size))


def bits_per_weight(model_dir, bits):
    stored, weights = 0, 0
    for header in safetensors_headers(model_dir):
        for name, info in header.items():
            if name == "__metadata__":
                continue
            nbytes = info["data_offsets"][1] - info["data_offsets"][0]
            if name.endswith((".qweight", ".qzeros", ".scales")):
                stored += 8 * nbytes
            if name.endswith(".qweight"):
                rows, cols = info["shape"]
                weights += rows * 32 // bits * cols
    return stored / weights


def chosen_group_sizes(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        q = json.load(f)["quantization_config"]
    linears = sum(1 for h in safetensors_headers(model_dir) for n in h if n.endswith(".qweight"))
    sizes = collections.Counter(v["group_size"] for v in q.get("dynamic", {}).values())
    sizes[q["group_size"]] += linears - sum(sizes.values())
    return {str(g): n for g, n in sorted(sizes.items(), key=lambda kv: (kv[0] > 0, -kv[0])) if n}


def configs(args):
    for bits in args.bits:
        for g in args.rtn_groups:
            yield {"label": "rtn", "method": "rtn", "bits": bits, "group_size": g}
        yield {"label": "finequant", "method": "finequant", "bits": bits, "group_size": -1}


def measure(args):
    done = set()
    if os.path.exists(args.out):
        with open(args.out) as f:
            done = {(r["model"], r["label"], r["bits"], r["group_size"]) for r in map(json.loads, filter(str.strip, f))}
    path, lines = TEXTS[TEXT]
    with open(args.out, "a") as out:
        for spec in args.model:
            name, rest = spec.split("=", 1)
            model, windows = rest.rsplit(":", 1)
            for c in configs(args):
                if (name, c["label"], c["bits"], c["group_size"]) in done:
                    continue
                qdir = os.path.join(args.work, f"{name}-{c['method']}-w{c['bits']}g{c['group_size']}")
                start = time.time()
                run([args.qshard, "quantize", "--model", model, "--out", qdir, "--method", c["method"], "--bits",
                     str(c["bits"]), "--group-size", str(c["group_size"]), "--threads", str(args.threads), "--json"])
                seconds = time.time() - start
                r = run([args.qshard, "eval", "--model", qdir, "--base", model, "--text", path, "--lines", lines,
                         "--seqlen", "512", "--max-windows", windows, "--threads", str(args.threads), "--json"])
                row = {**without_text(json.loads(r)), "model": name, **{k: c[k] for k in ("label", "bits", "group_size")},
                       "text": TEXT, "quantize_seconds": seconds,
                       "bits_per_weight": bits_per_weight(qdir, c["bits"]), "chosen": chosen_group_sizes(qdir)}
                out.write(json.dumps(row) + "\n")
                out.flush()
                print(f"{name} {c['label']} W{c['bits']} g{c['group_size']}: KL {row['kl_divergence']:.4f}",
                      file=sys.stderr)


def markdown(args):
    with open(args.out) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    for name in dict.fromkeys(r["model"] for r in rows):
        print(f"\n#### {name}\n")
        print("| method | bits | group | bits/weight | KL (nats) | top-1 agreement | perplexity | quantize s "
              "| group sizes chosen |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in sorted((r for r in rows if r["model"] == name),
                        key=lambda r: (-r["bits"], r["label"] == "finequant", r["group_size"] > 0, -r["group_size"])):
            group = "channel" if r["group_size"] == -1 else str(r["group_size"])
            if r["label"] == "finequant":
                group = f"from {group}"
            chosen = ", ".join(f"{'channel' if g == '-1' else g}: {n}" for g, n in r["chosen"].items())
            print(f"| {r['label']} | {r['bits']} | {group} | {r['bits_per_weight']:.3f} | {r['kl_divergence']:.4f} | "
                  f"{r['top1_agreement']:.4f} | {r['perplexity']:.2f} | {r['quantize_seconds']:.1f} | {chosen} |")


def main():
    p = common_arguments(__doc__, "build/finequant")
    p.add_argument("--model", action="append", default=[], help="NAME=DIR:EVAL_WINDOWS (repeatable)")
    p.add_argument("--bits", type=int, nargs="+", default=[8, 4, 3])
    p.add_argument("--rtn-groups", type=int, nargs="+", default=[-1, 128, 64, 32])
    args = p.parse_args()
    markdown(args) if args.markdown else measure(args)


if __name__ == "__main__":
    main()
