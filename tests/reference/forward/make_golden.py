#!/usr/bin/python3
"""Golden data for the forward-pass and evaluation tests (tests/model, tests/eval).

Run from the repository root with Debian's python3 (torch 1.13, no transformers):
    /usr/bin/python3 tests/reference/forward/make_golden.py [--check-reference-figures]

Writes, under tests/reference/forward/:
  tiny-opt/, tiny-opt-post-ln/  synthetic OPT checkpoints (random weights with an outlier
      channel): pre-LayerNorm fp32 with "model.decoder." names, and OPT-350M-like post-LayerNorm
      with project_in/project_out, no final LayerNorm, fp16 storage and "decoder." names;
  golden.json + golden/*.f32  logits of fixed token ids from torch_reference.py (full rows of
      the vocabulary for selected positions), a greedy continuation and the perplexity of the
      first windows of the WikiText-2 evaluation half (ids from the Hugging Face tokenizer via
      tokenize_text.js, stored in wikitext2_eval_head.i32).
--check-reference-figures also prints the full-text perplexities to compare with
../shared/reference.md (712.01 / 666.86 / 672.56); it takes a minute or two.
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import torch_reference  # noqa: E402

REPO = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
TINYSTORIES = "../shared/data/tinystories-656k"  # relative to the repository root, like the tests
WIKITEXT = "../shared/data/wikitext-2-raw/wiki.test.raw"
PTB = "../shared/data/ptb/ptb.valid.txt"
EVAL_SEQLEN, EVAL_WINDOWS = 512, 40


def make_tiny_opt(out_dir, seed, pre_layer_norm, proj_dim, prefix, dtype):
    hidden, heads, ffn, layers, vocab, max_pos = 64, 4, 96, 2, 100, 64
    g = torch.Generator().manual_seed(seed)
    randn = lambda *shape, std=1.0: torch.randn(*shape, generator=g) * std
    outlier = 5  # a hidden channel with large activations, as real OPT models have
    t = {}
    p = prefix
    t[p + "embed_tokens.weight"] = randn(vocab, proj_dim, std=0.25)
    t[p + "embed_positions.weight"] = randn(max_pos + 2, hidden, std=0.5)
    t[p + "embed_positions.weight"][:, outlier] += 6.0
    if proj_dim != hidden:
        t[p + "project_in.weight"] = randn(hidden, proj_dim, std=proj_dim ** -0.5)
        t[p + "project_out.weight"] = randn(proj_dim, hidden, std=hidden ** -0.5)
    else:
        t[p + "embed_tokens.weight"][:, outlier] *= 4.0

    def linear(name, n_out, n_in):
        t[name + ".weight"] = randn(n_out, n_in, std=n_in ** -0.5)
        t[name + ".bias"] = randn(n_out, std=0.1)

    def layer_norm(name):
        t[name + ".weight"] = 1.0 + randn(hidden, std=0.1)
        t[name + ".bias"] = randn(hidden, std=0.1)

    for i in range(layers):
        lp = f"{p}layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            linear(lp + "self_attn." + proj, hidden, hidden)
        linear(lp + "fc1", ffn, hidden)
        linear(lp + "fc2", hidden, ffn)
        t[lp + "fc2.bias"][outlier] += 3.0
        layer_norm(lp + "self_attn_layer_norm")
        layer_norm(lp + "final_layer_norm")
    if pre_layer_norm:
        layer_norm(p + "final_layer_norm")
    config = {
        "architectures": ["OPTForCausalLM"], "model_type": "opt", "activation_function": "relu",
        "hidden_size": hidden, "num_attention_heads": heads, "ffn_dim": ffn,
        "num_hidden_layers": layers, "vocab_size": vocab, "max_position_embeddings": max_pos,
        "do_layer_norm_before": pre_layer_norm, "word_embed_proj_dim": proj_dim,
        "enable_bias": True, "layer_norm_eps": 1e-5, "tie_word_embeddings": True,
        "bos_token_id": 2, "eos_token_id": 2, "pad_token_id": 1,
        "torch_dtype": "float32" if dtype == torch.float32 else "float16",
    }
    os.makedirs(out_dir, exist_ok=True)
    torch_reference.write_safetensors(os.path.join(out_dir, "model.safetensors"),
                                      {k: v.to(dtype) for k, v in t.items()})
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")


def tokenize(text_file, first, last, out):
    script = os.path.join(HERE, "tokenize_text.js")
    subprocess.run(["node", script, os.path.join(TINYSTORIES, "tokenizer.json"), text_file,
                    str(first), str(last), out], check=True)
    return np.fromfile(out, dtype="<i4")


def window_nll(forward, ids, seqlen, batch=8):
    """Sum of next-token NLL (fp64 log-softmax) and prediction count over full windows."""
    windows = len(ids) // seqlen
    total, count = 0.0, 0
    for start in range(0, windows, batch):
        n = min(batch, windows - start)
        x = torch.from_numpy(ids[start * seqlen:(start + n) * seqlen].astype(np.int64)).view(n, seqlen)
        logp = forward(x)[:, :-1].double().log_softmax(-1)
        total -= logp.gather(-1, x[:, 1:, None]).sum().item()
        count += n * (seqlen - 1)
    return total, count


def main():
    os.chdir(REPO)
    torch.set_num_threads(2)
    make_tiny_opt(os.path.join(HERE, "tiny-opt"), seed=1, pre_layer_norm=True, proj_dim=64,
                  prefix="model.decoder.", dtype=torch.float32)
    make_tiny_opt(os.path.join(HERE, "tiny-opt-post-ln"), seed=2, pre_layer_norm=False, proj_dim=32,
                  prefix="decoder.", dtype=torch.float16)

    models = {
        "tinystories": TINYSTORIES,
        "tiny_opt": "tests/reference/forward/tiny-opt",
        "tiny_opt_post_ln": "tests/reference/forward/tiny-opt-post-ln",
    }
    # (model, batch, seq, positions per window whose logits are kept; None = all)
    cases = [
        ("tinystories", 2, 45, [0, 1, 17, 44]),
        ("tinystories", 1, 512, [0, 255, 511]),
        ("tiny_opt", 2, 23, None),
        ("tiny_opt", 1, 64, None),
        ("tiny_opt_post_ln", 2, 23, None),
        ("tiny_opt_post_ln", 1, 64, None),
    ]
    golden_dir = os.path.join(HERE, "golden")
    os.makedirs(golden_dir, exist_ok=True)
    loaded = {name: torch_reference.load_model(path) for name, path in models.items()}
    rng = np.random.default_rng(7)
    manifest = {"cases": []}
    for model, batch, seq, positions in cases:
        tensors, cfg, forward = loaded[model]
        tokens = rng.integers(0, cfg["vocab_size"], size=batch * seq)
        logits = forward(torch.from_numpy(tokens).view(batch, seq)).reshape(batch * seq, -1)
        positions = positions if positions is not None else list(range(seq))
        rows = [w * seq + p for w in range(batch) for p in positions]
        name = f"{model}_b{batch}_s{seq}"
        logits[rows].numpy().astype("<f4").tofile(os.path.join(golden_dir, name + ".f32"))
        manifest["cases"].append({"name": name, "model": models[model], "batch": batch, "seq": seq,
                                  "tokens": tokens.tolist(), "rows": rows,
                                  "logits": f"tests/reference/forward/golden/{name}.f32"})

    # Greedy continuation of the model card's prompt, "<|start_story|>Once upon a time".
    _, cfg, forward = loaded["tinystories"]
    prompt = [1, 147, 201, 282, 57]
    ids = list(prompt)
    for _ in range(40):
        next_id = int(forward(torch.tensor([ids]))[0, -1].argmax())
        ids.append(next_id)
        if next_id == cfg["eos_token_id"]:
            break
    manifest["generation"] = {"model": TINYSTORIES, "prompt": prompt, "max_new_tokens": 40,
                              "eos": cfg["eos_token_id"], "generated": ids[len(prompt):]}

    # Perplexity of the first windows of the WikiText-2 evaluation half (lines 2180-4358).
    ids_file = os.path.join(HERE, "wikitext2_eval_head.i32")
    with tempfile.TemporaryDirectory() as tmp:
        ids = tokenize(WIKITEXT, 2180, 4358, os.path.join(tmp, "ids.i32"))
    ids[:EVAL_SEQLEN * EVAL_WINDOWS].astype("<i4").tofile(ids_file)
    total, count = window_nll(forward, ids[:EVAL_SEQLEN * EVAL_WINDOWS], EVAL_SEQLEN)
    manifest["wikitext2_eval_head"] = {
        "model": TINYSTORIES, "ids": "tests/reference/forward/wikitext2_eval_head.i32",
        "text": WIKITEXT, "first_line": 2180, "last_line": 4358,
        "seqlen": EVAL_SEQLEN, "windows": EVAL_WINDOWS, "predictions": count,
        "nll": total / count, "perplexity": float(np.exp(total / count))}
    with open(os.path.join(HERE, "golden.json"), "w") as f:
        json.dump(manifest, f, separators=(",", ":"))
        f.write("\n")
    print(f"WikiText-2 eval half, first {EVAL_WINDOWS} windows of {EVAL_SEQLEN}: "
          f"perplexity {np.exp(total / count):.4f}")
    print("greedy continuation:", manifest["generation"]["generated"])

    if "--check-reference-figures" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            for label, text, first, last in [("WikiText-2 test, all", WIKITEXT, 1, 4358),
                                             ("WikiText-2 test, evaluation half", WIKITEXT, 2180, 4358),
                                             ("PTB validation", PTB, 1, 3370)]:
                ids = tokenize(text, first, last, os.path.join(tmp, "ids.i32"))
                total, count = window_nll(forward, ids, EVAL_SEQLEN)
                print(f"{label}: {len(ids)} tokens, perplexity {np.exp(total / count):.2f}")


if __name__ == "__main__":
    main()
