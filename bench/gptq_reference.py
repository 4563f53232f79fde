#!/usr/bin/python3
"""GPTQ by its authors' code: IST-DASLab/gptq's `GPTQ` (gptq.py) and `Quantizer` (quant.py),
imported at run time from --gptq-src (never copied here), driven like their llama.py
`--true-sequential` loop over the plain-PyTorch forward of tests/reference/forward/torch_reference.py.
The baseline `qshard bench quantize` times qshard's GPTQ job against, on the same token ids.

The loop, as in llama.py: the calibration windows are embedded; then per layer and per group of
linears that read the same input (--groups, from qshard's layer description), every window
goes through the layer one at a time (batch 1) with each group linear's input fed to
`GPTQ.add_batch`, then `fasterquant` quantizes each of the group's linears (same bits, group
size, damping and act-order as qshard); after the last group the layer's outputs are
recomputed with the quantized weights and become the next layer's inputs.

Two shims make the authors' CUDA-era module run on Debian's CPU-only torch, without changing
what it computes: gptq.py imports `transformers` only for `isinstance(layer,
transformers.Conv1D)`, so a stand-in module named `transformers` whose Conv1D class nothing is an
instance of is put in sys.modules first (Debian has no python3-transformers); and
`torch.cuda.synchronize`, which fasterquant calls and which fails without CUDA, becomes a no-op
when CUDA is absent. The authors' prints go to stderr.

Inputs: the model directory (single model.safetensors), the ids (raw little-endian int32,
windows × --seqlen). Output: --out, a Hugging Face directory with the dequantized weights in
float32 (and the source's config and tokenizer files), which `qshard eval` reads as an
unquantized model. Prints one JSON object: seconds (load, embedding, the layer loop: all but
writing --out) and its phases: forward (embedding and layer passes, without the statistics),
statistics (add_batch) and solve (fasterquant).

    /usr/bin/python3 bench/gptq_reference.py --gptq-src /tmp/gptq-ref --model M --ids ids.i32 \
        --seqlen 512 --groups "self_attn.q_proj,self_attn.k_proj,self_attn.v_proj;self_attn.o_proj;..." \
        --bits 4 --group-size 32 --threads 2 --out DIR
"""

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
import types

# Torch's OpenMP threads spin between parallel regions by default; on a machine whose cores are
# shared (this project's 2-core CI machine with other builds running) a descheduled spinner
# stalls every region: 16 TinyStories windows took 58.7 s at 2 threads against 13.6 s with
# passive waiting (load 8.5). Passive unless the caller chose; the row reports the policy.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    import numpy as np
    import torch
except ImportError as error:
    raise SystemExit(f"bench/gptq_reference.py needs PyTorch and NumPy ({error}): Debian's python3-torch "
                     "(QSHARD_WITH_PYTHON=1 scripts/install-deps)")
from torch_threads import set_threads  # noqa: E402

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "reference", "forward"))
import torch_reference  # noqa: E402


def import_authors_gptq(src):
    """The authors' gptq and quant modules from the folder `src`, with the two shims above."""
    for name in ("gptq.py", "quant.py"):
        if not os.path.isfile(os.path.join(src, name)):
            raise SystemExit(f"--gptq-src {src}: no {name} (a checkout of IST-DASLab/gptq)")
    if "transformers" not in sys.modules:
        stand_in = types.ModuleType("transformers")
        stand_in.Conv1D = type("Conv1D", (), {})  # nothing here is a transformers Conv1D
        sys.modules["transformers"] = stand_in
    if not torch.cuda.is_available():
        torch.cuda.synchronize = lambda *args, **kwargs: None
    sys.path.insert(0, os.path.abspath(src))
    import gptq
    import quant
    return gptq, quant


class Timer:
    """Seconds spent inside `with timer:` blocks, summed."""

    def __init__(self):
        self.seconds = 0.0

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        self.seconds += time.perf_counter() - self.start


def as_linear(t, name):
    """An nn.Linear holding t[name + ".weight"] (what GPTQ reads and replaces), without the
    random initialization."""
    weight = t[name + ".weight"]
    module = torch.nn.utils.skip_init(torch.nn.Linear, weight.shape[1], weight.shape[0], bias=False)
    module.weight.data = weight
    return module


def quantize_model(args, t, cfg, windows, gptq, quant):
    embed, layer_forward, layer_prefix, _ = torch_reference.ARCHITECTURES[cfg["model_type"]]
    groups = [group.split(",") for group in args.groups.split(";")]
    forward, statistics, solve = Timer(), Timer(), Timer()
    with forward:
        inps = embed(t, cfg, windows)
    outs = torch.zeros_like(inps)
    for i in range(cfg["num_hidden_layers"]):
        prefix = layer_prefix(t, i)
        for group in groups:
            names = [prefix + name for name in group]
            solvers = {}
            for name in names:
                solvers[name] = gptq.GPTQ(as_linear(t, name))
                solvers[name].quantizer = quant.Quantizer()
                solvers[name].quantizer.configure(args.bits, perchannel=True, sym=False, mse=False)

            def hooked(x, t, name, bias):  # the forward hook of llama.py's add_batch
                if name in solvers:
                    with statistics:
                        solvers[name].add_batch(x.data, None)
                return torch_reference._linear(x, t, name, bias)

            with forward:
                for j in range(len(windows)):
                    outs[j] = layer_forward(t, cfg, i, inps[j:j + 1], hooked)[0]
            for name in names:
                print(i, name, file=sys.stderr)
                with solve:
                    solvers[name].fasterquant(percdamp=args.damp, groupsize=args.group_size, actorder=args.act_order)
                t[name + ".weight"] = solvers[name].layer.weight.data
                solvers[name].free()
        with forward:
            for j in range(len(windows)):
                outs[j] = layer_forward(t, cfg, i, inps[j:j + 1])[0]
        inps, outs = outs, inps
    # Statistics run inside the layer passes: count them once, as statistics.
    return forward.seconds - statistics.seconds, statistics.seconds, solve.seconds


def write_model(source, out, t):
    """`out` as a copy of the model directory `source` with the tensors `t` in float32."""
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(source):
        path = os.path.join(source, name)
        if os.path.isfile(path) and not name.endswith(".safetensors") and not name.endswith(".safetensors.index.json"):
            shutil.copyfile(path, os.path.join(out, name))
    torch_reference.write_safetensors(os.path.join(out, "model.safetensors"), t)


def run_reference(args, import_authors, quantize_model, phases, extra=None):
    """What every authors'-code baseline does around its loop: set the threads, import the
    authors' modules, read the ids (--ids, --seqlen) and the model (--model), run
    quantize_model(args, tensors, config, windows, *modules) with their prints on stderr, write
    --out, and print one JSON object: seconds (all but the writing), load seconds, and the
    seconds quantize_model returns, named `phases`."""
    blas = set_threads(args.threads)
    modules = import_authors()
    ids = np.fromfile(args.ids, dtype="<i4").astype(np.int64)
    if ids.size == 0 or ids.size % args.seqlen != 0:
        raise SystemExit(f"--ids {args.ids}: {ids.size} ids are not whole windows of {args.seqlen}")
    windows = torch.from_numpy(ids).view(-1, args.seqlen)

    start = time.perf_counter()
    t, cfg, _ = torch_reference.load_model(args.model)
    load_seconds = time.perf_counter() - start
    with torch.no_grad(), contextlib.redirect_stdout(sys.stderr):
        seconds_by_phase = quantize_model(args, t, cfg, windows, *modules)
    seconds = time.perf_counter() - start
    write_model(args.model, args.out, t)
    print(json.dumps({"seconds": seconds, "load_seconds": load_seconds,
                      **{f"{name}_seconds": value for name, value in zip(phases, seconds_by_phase)},
                      "windows": len(windows), "threads": args.threads,
                      "omp_wait_policy": os.environ["OMP_WAIT_POLICY"], "torch": torch.__version__, "blas": blas,
                      **(extra or {})}))


def reference_arguments(doc, default_bits):
    """The arguments every authors'-code baseline takes; add its own, then parse."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--ids", required=True, help="calibration windows: raw int32, windows x --seqlen")
    parser.add_argument("--seqlen", type=int, required=True)
    parser.add_argument("--bits", type=int, default=default_bits)
    parser.add_argument("--act-order", action="store_true")
    parser.add_argument("--damp", type=float, default=0.01, help="percdamp")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True, help="write the dequantized model directory here")
    return parser


def main():
    parser = reference_arguments(__doc__, 4)
    parser.add_argument("--gptq-src", required=True, help="folder with the authors' gptq.py and quant.py")
    parser.add_argument("--groups", required=True,
                        help="linears (relative to the layer) in true-sequential groups: a,b,c;d;...")
    parser.add_argument("--group-size", type=int, default=-1)
    args = parser.parse_args()

    run_reference(args, lambda: import_authors_gptq(args.gptq_src), quantize_model, ("forward", "statistics", "solve"))


if __name__ == "__main__":
    main()
