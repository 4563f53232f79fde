#!/usr/bin/python3
"""aespa by its authors' code: SamsungLabs/aespa's `Aespa` class (aespa.py), `MinMaxQuantizer`
(quantizer.py) and `refine_qparams_with_hessian` (quant_utils.py, with model_utils.py's Z-Fold
layer lists), imported at run time from --aespa-src (never copied here). The baseline `qshard
bench quantize` times qshard's aespa job against, on the same token ids. LLaMA-architecture
models only (TinyStories-656K).

The loop is their quantize.py `aespa_fwrd` with block_v, use_zfold, optq_init and
learn_rounding on (their README's example, without act_order unless --act-order): the
calibration windows are embedded; per layer, every window goes through the full-precision layer
one at a time (batch 1), feeding their statistics: each linear's input covariance through
`Aespa.compute_cov_in_batch` (the query and key projections share the value projection's), the
value projection's per-head attention-mixed covariance, and the rotated query and key output
covariances, as their `compute_Hessian` computes them from its forward hooks (with the KV-head
averaging and the RoPE pull-back for grouped-query attention); then
`refine_qparams_with_hessian` (Z-Fold for the shared q/k/v ζ and down_proj) and `Aespa.quant`
(OPTQ start, AdaRound) for every linear; then the layer's outputs are recomputed with the
quantized weights and become the next layer's inputs. Their forward hooks need their patched
Hugging Face LLaMA module, and Debian has no python3-transformers, so the layer is the
plain-PyTorch forward of tests/reference/forward/torch_reference.py, which shows the same
intermediate tensors (`observe`); the statistics code around it is written here.

Device mapping: their code targets CUDA (`torch.ones(1).cuda()` in the Z-Fold refinement,
`torch.cuda.max_memory_allocated("cuda")` in AdaRound's progress lines). Without CUDA,
`Tensor.cuda` returns the tensor itself and `max_memory_allocated` returns 0, so everything runs
on the CPU and computes what it would on a GPU, in float32 (TF32 is off in their aespa.py). Their
progress prints go to stderr.

Inputs: the model directory (single model.safetensors), the ids (raw little-endian int32,
windows × --seqlen). Output: --out, a Hugging Face directory with the fake-quantized weights in
float32 (with the source's config and tokenizer files), which `qshard eval` reads as an
unquantized model. Prints one JSON object: seconds (load, embedding, the layer loop: all but
writing --out) and its phases: forward (embedding and layer passes, without the statistics),
statistics, refine (their quantization-parameter search) and solve (`Aespa.quant`).

    /usr/bin/python3 bench/aespa_reference.py --aespa-src /tmp/aespa-ref --model M --ids ids.i32 \\
        --seqlen 512 --bits 3 --iters 2000 --threads 2 --out DIR
"""

import math
import os
import sys
import types

from gptq_reference import REPO, Timer, as_linear, reference_arguments, run_reference  # sets OMP_WAIT_POLICY

import torch

sys.path.insert(0, os.path.join(REPO, "tests", "reference", "forward"))
import torch_reference  # noqa: E402

LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def import_authors_aespa(src):
    """Their aespa, quantizer and quant_utils modules from the folder `src`, on the CPU when
    there is no CUDA (the mapping above)."""
    for name in ("aespa.py", "quant_utils.py", "quantizer.py", "model_utils.py"):
        if not os.path.isfile(os.path.join(src, name)):
            raise SystemExit(f"--aespa-src {src}: no {name} (a checkout of SamsungLabs/aespa)")
    if not torch.cuda.is_available():
        torch.Tensor.cuda = lambda self, *args, **kwargs: self
        torch.cuda.max_memory_allocated = lambda *args, **kwargs: 0
    sys.path.insert(0, os.path.abspath(src))
    import aespa
    import quant_utils
    import quantizer
    return aespa, quant_utils, quantizer


class RunningCovariance:
    """2/n·Σ x xᵀ over the columns seen so far, updated per window the way their
    compute_cov_*_batch methods update theirs (rescale, then add the scaled product)."""

    def __init__(self):
        self.value, self.n = 0, 0

    def add(self, x):  # x [..., d, tokens]
        n_current = x.shape[-1]
        self.value *= self.n / (self.n + n_current)
        self.n += n_current
        x = math.sqrt(2 / self.n) * x.float()
        self.value += x @ x.transpose(-1, -2)


def rotations(seq, head_dim, theta):
    """R_t [seq, 1, d, d] with rotated = R_t · x at position t: RoPE as a matrix per position."""
    cos, sin = torch_reference._rope_cos_sin(seq, head_dim, theta)
    half = head_dim // 2
    r = torch.zeros(seq, head_dim, head_dim)
    r[:, :half, :half] = torch.diag_embed(cos[:, :half])
    r[:, :half, half:] = -torch.diag_embed(sin[:, :half])
    r[:, half:, :half] = torch.diag_embed(sin[:, :half])
    r[:, half:, half:] = torch.diag_embed(cos[:, :half])
    return r.unsqueeze(1)


def layer_statistics(t, cfg, i, inps, wrappers, layer_forward, timer):
    """Fills the wrappers' H and cov_G from the full-precision layer over every window."""
    heads, kv_heads = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    head_dim = cfg.get("head_dim", cfg["hidden_size"] // heads)
    prefix = torch_reference.llama_layer_prefix(t, i)
    value_h = RunningCovariance()
    outputs = {"query": RunningCovariance(), "key": RunningCovariance()}
    seen = {}

    def hooked(x, t, name, bias):
        short = name[len(prefix):]
        if short == "self_attn.v_proj":
            seen["value_input"] = x
        if short in wrappers and short not in ("self_attn.q_proj", "self_attn.k_proj"):
            with timer:
                wrappers[short].compute_cov_in_batch(None, (x.data,), None)
        return torch_reference._linear(x, t, name, bias)

    def observe(what, x):
        seen[what] = x

    for j in range(len(inps)):
        layer_forward(t, cfg, i, inps[j:j + 1], hooked, observe)
        with timer:
            mixed = seen["probs"] @ seen["value_input"].unsqueeze(1)  # [1, heads, s, hidden]
            value_h.add(mixed.transpose(0, 1).reshape(heads, -1, mixed.shape[-1]).transpose(-1, -2))
            for what in ("query", "key"):
                x = seen[what]  # [1, heads or kv_heads, s, d]
                outputs[what].add(x.transpose(0, 1).reshape(x.shape[1], -1, head_dim).transpose(-1, -2))
    with timer:
        shared = wrappers["self_attn.v_proj"].H
        wrappers["self_attn.q_proj"].H = shared
        wrappers["self_attn.k_proj"].H = shared
        rep = heads // kv_heads
        h_value, cov_q, cov_k = value_h.value, outputs["query"].value, outputs["key"].value
        if rep != 1:
            h_value = h_value.reshape(kv_heads, rep, h_value.shape[-1], -1).mean(dim=1)
            cov_q = cov_q.reshape(kv_heads, rep, head_dim, head_dim).mean(dim=1)
            cov_k = cov_k[:, None].expand(kv_heads, rep, head_dim, head_dim).reshape(heads, head_dim, head_dim)
        wrappers["self_attn.v_proj"].H = h_value
        r = rotations(inps.shape[1], head_dim, cfg.get("rope_theta", 10000.0))
        wrappers["self_attn.q_proj"].cov_G = (r.transpose(-1, -2) @ cov_k @ r).mean(0)
        wrappers["self_attn.k_proj"].cov_G = (r.transpose(-1, -2) @ cov_q @ r).mean(0)


def quantize_model(args, t, cfg, windows, aespa, quant_utils, quantizer):
    if cfg["model_type"] != "llama":
        raise SystemExit(f"bench/aespa_reference.py: {cfg['model_type']} models are not supported (LLaMA only)")
    embed, _, layer_prefix, _ = torch_reference.ARCHITECTURES["llama"]
    layer_forward = torch_reference.llama_layer
    opts = {"optq_init": True, "act_order": args.act_order, "learn_rounding": args.iters > 0, "lr": args.lr,
            "round_weight": 1.0, "round_weight_qkv": 1.5, "num_iters": args.iters}
    hyperparams = {"replace": 1 / 2048, "percdamp": args.damp}
    llm_config = types.SimpleNamespace(num_attention_heads=cfg["num_attention_heads"],
                                       num_key_value_heads=cfg.get("num_key_value_heads", cfg["num_attention_heads"]))
    forward, statistics, refine, solve = Timer(), Timer(), Timer(), Timer()
    with forward:
        inps = embed(t, cfg, windows).float()
    outs = torch.zeros_like(inps)
    for i in range(cfg["num_hidden_layers"]):
        prefix = layer_prefix(t, i)
        wrappers = {}
        for name in LINEARS:
            wrappers[name] = aespa.Aespa(as_linear(t, prefix + name))
            wrappers[name].i, wrappers[name].name = i, name
            wrappers[name].quantizer = quantizer.MinMaxQuantizer()
            wrappers[name].quantizer.configure(args.bits, per_channel=True, sym=False)
            wrappers[name].quantizer.find_params(wrappers[name].layer.weight.data)
        with forward:
            layer_statistics(t, cfg, i, inps, wrappers, layer_forward, statistics)
        with refine:
            quant_utils.refine_qparams_with_hessian(wrappers, i, "llama", True, hyperparams, llm_config)
        with solve:
            for name, wrapper in wrappers.items():
                wrapper.quant(opts, hyperparams)
                t[prefix + name + ".weight"] = wrapper.layer.weight.data
                wrapper.free()
        with forward:
            for j in range(len(windows)):
                outs[j] = layer_forward(t, cfg, i, inps[j:j + 1])[0]
        inps, outs = outs, inps
    # Statistics run inside the layer passes: count them once, as statistics.
    return forward.seconds - statistics.seconds, statistics.seconds, refine.seconds, solve.seconds


def main():
    parser = reference_arguments(__doc__, 3)
    parser.add_argument("--aespa-src", required=True, help="folder with the authors' aespa.py, quant_utils.py, ...")
    parser.add_argument("--iters", type=int, default=2000, help="AdaRound iterations (0: no AdaRound)")
    parser.add_argument("--lr", type=float, default=0.015, help="AdaRound learning rate")
    args = parser.parse_args()

    run_reference(args, lambda: import_authors_aespa(args.aespa_src), quantize_model,
                  ("forward", "statistics", "refine", "solve"),
                  {"device": "cuda" if torch.cuda.is_available() else "cpu"})

if __name__ == "__main__":
    main()
