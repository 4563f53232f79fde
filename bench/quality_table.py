#!/usr/bin/env python3
"""Quality table of the quantization methods on one model (docs/results.md).

For every (method, bits, group size, act-order, seed) it runs `qshard quantize`, then
`qshard eval --base` on each evaluation text, and appends one JSON object per evaluation to
--out (resuming: rows already there are skipped). `--markdown` turns the rows into the tables
of docs/results.md: means over seeds of perplexity, KL(base || quantized) and top-1 agreement.

Example (the command behind docs/results.md):
  bench/quality_table.py --qshard build/tools/qshard/qshard --out build/quality.jsonl \
      --seeds 0 1 2 --max-windows 64
  bench/quality_table.py --out build/quality.jsonl --markdown > table.md
"""
import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time

DATA = "../shared/data"
MODEL = f"{DATA}/tinystories-656k"
WIKI = f"{DATA}/wikitext-2-raw/wiki.test.raw"
TEXTS = {  # name -> (file, lines); calibration always on WikiText-2 test lines 1-2179
    "wikitext2-eval-half": (WIKI, "2180-4358"),
    "ptb-valid": (f"{DATA}/ptb/ptb.valid.txt", ""),
}
METHODS = [  # (label, method, extra flags)
    ("rtn", "rtn", []),
    ("gptq", "gptq", []),
    ("gptq act-order", "gptq", ["--act-order"]),
    ("zfold", "zfold", []),
    ("aespa (no AdaRound)", "aespa", ["--aespa-adaround-iters", "0"]),
    ("aespa", "aespa", []),
    # Weights and activations per tensor (docs/flattenquant.md); W8A8 at --bits 8, the INT4/INT8
    # rule at --bits 4; per channel only.
    ("flattenquant off", "flattenquant", ["--flatten-threshold", "off"]),
    ("flattenquant auto", "flattenquant", ["--flatten-threshold", "auto"]),
    # A stricter INT4 rule (--bits 4 only): fewer linears at W4A4.
    ("flattenquant off e4<=0.015", "flattenquant", ["--flatten-threshold", "off", "--int4-max-error", "0.015"]),
    ("flattenquant auto e4<=0.015", "flattenquant", ["--flatten-threshold", "auto", "--int4-max-error", "0.015"]),
]


def configs(args):
    for (label, method, extra), bits, group in itertools.product(METHODS, args.bits, args.group_sizes):
        if args.methods and method not in args.methods:
            continue
        if "act-order" in label and bits not in (3, 4):
            continue
        if method == "flattenquant" and (bits not in (4, 8) or group != -1):
            continue
        if "--int4-max-error" in extra and bits != 4:
            continue
        # RTN has no calibration, and weight-only W8 is lossless enough that seeds do not move it
        # (FlattenQuant's W8A8 is not: its activations are quantized too).
        seeds = [0] if method == "rtn" or (bits == 8 and method != "flattenquant") else args.seeds
        for seed in seeds:
            yield {"label": label, "method": method, "extra": extra, "bits": bits, "group_size": group, "seed": seed}


def without_text(result):
    """An eval result without its "text" (the file path): rows name the text by its TEXTS key."""
    return {k: v for k, v in result.items() if k != "text"}


def key(row):
    return (row["label"], row["bits"], row["group_size"], row["seed"], row["text"])


def run(cmd):
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{result.stderr}")
    return result.stdout


def evaluate(args, model, text):
    path, lines = TEXTS[text]
    cmd = [args.qshard, "eval", "--model", model, "--base", MODEL, "--text", path, "--seqlen", "512",
           "--max-windows", str(args.max_windows), "--threads", str(args.threads), "--json"]
    if lines:
        cmd += ["--lines", lines]
    return json.loads(run(cmd))


def flattening(qdir):
    """FlattenQuant's shape of a checkpoint: input channels added by the split (per linear name
    and in all) and the fraction of the linears' multiply-adds at 4 bits."""
    with open(os.path.join(qdir, "quant_report.json")) as f:
        modules = json.load(f)["modules"]
    with open(os.path.join(qdir, "config.json")) as f:
        shapes = json.load(f)["quantization_config"]["modules"]
    added, macs, macs4 = {}, 0, 0
    for m in modules:
        added[m["name"]] = added.get(m["name"], 0) + m["added_inputs"]
    for m in modules:
        name = f"model.layers.{m['layer']}.{m['name']}"
        width = shapes[name]["in_features"]
        out = OUT_FEATURES[m["name"]]
        macs += width * out
        macs4 += width * out if m["act_bits"] == 4 else 0
    return {"added_inputs": added, "added_inputs_total": sum(added.values()), "int4_mac_fraction": macs4 / macs}


# TinyStories-656K's linears' output widths (hidden 128, 8 heads of 16, 4 KV heads, FFN 384): the
# checkpoint records only the flattened input widths.
OUT_FEATURES = {"self_attn.q_proj": 128, "self_attn.k_proj": 64, "self_attn.v_proj": 64, "self_attn.o_proj": 128,
                "mlp.gate_proj": 384, "mlp.up_proj": 384, "mlp.down_proj": 128}


def measure(args):
    done = set()
    if os.path.exists(args.out):
        with open(args.out) as f:
            done = {key(json.loads(line)) for line in f if line.strip()}
    with open(args.out, "a") as out:
        for text in TEXTS:  # the fp32 row
            if ("fp32", 32, -1, 0, text) not in done:
                r = evaluate(args, MODEL, text)
                out.write(json.dumps({"label": "fp32", "bits": 32, "group_size": -1, "seed": 0, "text": text,
                                      **without_text(r), "quantize_seconds": 0.0}) + "\n")
                out.flush()
        for c in configs(args):
            # Seed means are taken on WikiText-2; PTB is evaluated for seed 0 only, to save time.
            texts = [t for t in TEXTS if c["seed"] == 0 or t == "wikitext2-eval-half"]
            if all((c["label"], c["bits"], c["group_size"], c["seed"], t) in done for t in texts):
                continue
            qdir = os.path.join(args.work, f"{c['method']}-{'-'.join(c['extra'])}-w{c['bits']}g{c['group_size']}-s{c['seed']}")
            start = time.time()
            run([args.qshard, "quantize", "--model", MODEL, "--out", qdir, "--method", c["method"],
                 "--bits", str(c["bits"]), "--group-size", str(c["group_size"]), "--calib-text", WIKI,
                 "--calib-lines", "1-2179", "--nsamples", str(args.nsamples), "--seqlen", "512",
                 "--seed", str(c["seed"]), "--threads", str(args.threads), "--json"] + c["extra"])
            seconds = time.time() - start
            for text in texts:
                r = evaluate(args, qdir, text)
                row = {k: c[k] for k in ("label", "bits", "group_size", "seed")}
                if c["method"] == "flattenquant":
                    row.update(flattening(qdir))
                out.write(json.dumps({**row, "text": text, **without_text(r), "quantize_seconds": seconds}) + "\n")
                out.flush()
            print(f"{c['label']} W{c['bits']} g{c['group_size']} seed {c['seed']}: {seconds:.1f} s", file=sys.stderr)


def markdown(args):
    with open(args.out) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    groups = {}
    for r in rows:
        groups.setdefault((r["label"], r["bits"], r["group_size"], r["text"]), []).append(r)
    order = {label: i for i, (label, _, _) in enumerate([("fp32", None, None)] + METHODS)}
    for text in TEXTS:
        print(f"\n#### {text}\n")
        print("| method | bits | group | seeds | perplexity | KL (nats) | top-1 agreement | quantize s |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        keys = sorted((k for k in groups if k[3] == text), key=lambda k: (-k[1], k[2], order.get(k[0], 99)))
        for k in keys:
            g = groups[k]
            mean = lambda field: statistics.mean(r.get(field, 0.0) for r in g)
            spread = lambda field: f" ± {statistics.stdev(r[field] for r in g):.3g}" if len(g) > 1 else ""
            group = "channel" if k[2] == -1 else str(k[2])
            print(f"| {k[0]} | {k[1]} | {group} | {len(g)} | {mean('perplexity'):.2f}{spread('perplexity')} | "
                  f"{mean('kl_divergence'):.4f}{spread('kl_divergence')} | {mean('top1_agreement'):.4f} | "
                  f"{mean('quantize_seconds'):.1f} |")


def common_arguments(description, work):
    """The flags every table script shares: the binary, the rows file, the scratch folder, threads."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--qshard", default="build/tools/qshard/qshard")
    p.add_argument("--out", required=True, help="JSON lines file (appended to, resumable)")
    p.add_argument("--work", default=work, help="where the quantized checkpoints go")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--markdown", action="store_true", help="print the tables instead of measuring")
    return p


def main():
    p = common_arguments(__doc__, "build/quality")
    p.add_argument("--bits", type=int, nargs="+", default=[8, 4, 3, 2])
    p.add_argument("--group-sizes", type=int, nargs="+", default=[-1, 32])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", help="only these methods (rtn, gptq, zfold, aespa, flattenquant)")
    p.add_argument("--nsamples", type=int, default=128)
    p.add_argument("--max-windows", type=int, default=64)
    args = p.parse_args()
    markdown(args) if args.markdown else measure(args)


if __name__ == "__main__":
    main()
