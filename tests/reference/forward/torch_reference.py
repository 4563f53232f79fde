"""Plain-PyTorch reference forward passes for LLaMA and OPT causal LMs, written from the
Hugging Face modeling equations (transformers 4.41 modeling_llama.py / modeling_opt.py), with a
minimal safetensors reader/writer. Independent of the C++ code it checks; used by
make_golden.py, bench/forward_reference.py and, layer by layer, bench/gptq_reference.py. Needs only torch (Debian python3-torch)."""

import json
import math
import struct

import torch

_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
_NAMES = {v: k for k, v in _DTYPES.items()}


def read_safetensors(path):
    """All tensors of a safetensors file, converted to float32."""
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = bytearray(data[base + begin:base + end])
        t = torch.frombuffer(raw, dtype=_DTYPES[info["dtype"]]) if raw else torch.empty(0)
        tensors[name] = t.reshape(info["shape"]).to(torch.float32)
    return tensors


def write_safetensors(path, tensors):
    """Writes {name: tensor} (float32 or float16) as a safetensors file."""
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        raw = t.numpy().tobytes()
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for raw in chunks:
            f.write(raw)


def _linear(x, tensors, name, bias):
    y = x @ tensors[name + ".weight"].T
    if bias:
        y = y + tensors[name + ".bias"]
    return y


def _causal_attention(q, k, v, scores_divisor, observe=None):
    """q [b, H, s, d], k/v [b, H, s, d] -> [b, s, H*d]; HF: scores + causal mask, fp32 softmax.
    `observe("probs", p)`, if given, sees the probabilities [b, H, s, s]."""
    b, h, s, d = q.shape
    scores = q @ k.transpose(2, 3)
    if scores_divisor is not None:
        scores = scores / scores_divisor
    mask = torch.full((s, s), torch.finfo(torch.float32).min).triu(1)
    probs = torch.softmax(scores + mask, dim=-1, dtype=torch.float32)
    if observe is not None:
        observe("probs", probs)
    return (probs @ v).transpose(1, 2).reshape(b, s, h * d)


# --- LLaMA (modeling_llama.py) -------------------------------------------------------------

def _rms_norm(x, weight, eps):
    variance = x.pow(2).mean(-1, keepdim=True)
    return weight * (x * torch.rsqrt(variance + eps))


def _rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rope_cos_sin(seq, head_dim, theta):
    # LlamaRotaryEmbedding: inv_freq in fp32, freqs = positions x inv_freq in fp32.
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    freqs = torch.arange(seq, dtype=torch.float32)[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def llama_embed(t, cfg, ids):
    """ids [batch, seq] (long) -> the first layer's input [batch, seq, hidden]."""
    return t.get("model.embed_tokens.weight", t.get("lm_head.weight"))[ids]


def llama_layer(t, cfg, i, h, linear=_linear, observe=None):
    """Decoder layer i on h [batch, seq, hidden]; `linear(x, t, name, bias)` computes each
    projection (bench/gptq_reference.py passes one that also feeds GPTQ's statistics).
    `observe(what, tensor)`, if given, sees the rotated queries ("query", [b, heads, s, d]) and
    keys ("key", [b, kv_heads, s, d]) and the attention probabilities ("probs", [b, heads, s, s])
    (bench/aespa_reference.py's statistics)."""
    hidden, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads", heads)
    head_dim = cfg.get("head_dim", hidden // heads)
    eps, theta = cfg["rms_norm_eps"], cfg.get("rope_theta", 10000.0)
    attn_bias, mlp_bias = cfg.get("attention_bias", False), cfg.get("mlp_bias", False)
    b, s, _ = h.shape
    cos, sin = _rope_cos_sin(s, head_dim, theta)
    p = llama_layer_prefix(t, i)
    x = _rms_norm(h, t[p + "input_layernorm.weight"], eps)
    q = linear(x, t, p + "self_attn.q_proj", attn_bias).view(b, s, heads, head_dim).transpose(1, 2)
    k = linear(x, t, p + "self_attn.k_proj", attn_bias).view(b, s, kv_heads, head_dim).transpose(1, 2)
    v = linear(x, t, p + "self_attn.v_proj", attn_bias).view(b, s, kv_heads, head_dim).transpose(1, 2)
    q = q * cos + _rotate_half(q) * sin
    k = k * cos + _rotate_half(k) * sin
    if observe is not None:
        observe("query", q)
        observe("key", k)
    rep = heads // kv_heads  # repeat_kv: query head j reads key/value head j // rep
    k = k.repeat_interleave(rep, dim=1)
    v = v.repeat_interleave(rep, dim=1)
    attn = _causal_attention(q, k, v, math.sqrt(head_dim), observe)
    h = h + linear(attn, t, p + "self_attn.o_proj", attn_bias)
    x = _rms_norm(h, t[p + "post_attention_layernorm.weight"], eps)
    gate = linear(x, t, p + "mlp.gate_proj", mlp_bias)
    up = linear(x, t, p + "mlp.up_proj", mlp_bias)
    return h + linear(torch.nn.functional.silu(gate) * up, t, p + "mlp.down_proj", mlp_bias)


def llama_layer_prefix(t, i):
    return f"model.layers.{i}."


def llama_head(t, cfg, h):
    """The last layer's output -> logits [batch, seq, vocab]."""
    embed = t.get("model.embed_tokens.weight", t.get("lm_head.weight"))
    head = t.get("lm_head.weight", embed)
    return _rms_norm(h, t["model.norm.weight"], cfg["rms_norm_eps"]) @ head.T


# --- OPT (modeling_opt.py) -----------------------------------------------------------------

def _layer_norm(x, t, name, eps):
    return torch.nn.functional.layer_norm(x, x.shape[-1:], t[name + ".weight"], t[name + ".bias"], eps)


def _opt_prefix(t):
    return "model.decoder." if "model.decoder.embed_tokens.weight" in t else "decoder."


def opt_embed(t, cfg, ids):
    """ids [batch, seq] (long) -> the first layer's input [batch, seq, hidden]."""
    prefix = _opt_prefix(t)
    b, s = ids.shape
    x = t[prefix + "embed_tokens.weight"][ids]
    if prefix + "project_in.weight" in t:
        x = x @ t[prefix + "project_in.weight"].T
    # OPTLearnedPositionalEmbedding: cumsum(attention_mask) - 1 + offset 2, no padding here.
    mask = torch.ones(b, s, dtype=torch.long)
    positions = torch.cumsum(mask, dim=1) * mask - 1
    return x + t[prefix + "embed_positions.weight"][positions + 2]


def opt_layer(t, cfg, i, h, linear=_linear):
    """Decoder layer i on h [batch, seq, hidden]; `linear` as in llama_layer."""
    hidden, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    head_dim = hidden // heads
    eps = cfg.get("layer_norm_eps", 1e-5)
    pre = cfg.get("do_layer_norm_before", True)
    bias = cfg.get("enable_bias", True)
    b, s, _ = h.shape
    p = opt_layer_prefix(t, i)
    residual = h
    if pre:
        h = _layer_norm(h, t, p + "self_attn_layer_norm", eps)
    q = linear(h, t, p + "self_attn.q_proj", bias) * head_dim ** -0.5
    k = linear(h, t, p + "self_attn.k_proj", bias)
    v = linear(h, t, p + "self_attn.v_proj", bias)
    split = lambda y: y.view(b, s, heads, head_dim).transpose(1, 2)
    attn = _causal_attention(split(q), split(k), split(v), None)
    h = residual + linear(attn, t, p + "self_attn.out_proj", bias)
    if not pre:
        h = _layer_norm(h, t, p + "self_attn_layer_norm", eps)
    residual = h
    if pre:
        h = _layer_norm(h, t, p + "final_layer_norm", eps)
    h = torch.relu(linear(h, t, p + "fc1", bias))
    h = residual + linear(h, t, p + "fc2", bias)
    if not pre:
        h = _layer_norm(h, t, p + "final_layer_norm", eps)
    return h


def opt_layer_prefix(t, i):
    return f"{_opt_prefix(t)}layers.{i}."


def opt_head(t, cfg, h):
    """The last layer's output -> logits [batch, seq, vocab]."""
    prefix = _opt_prefix(t)
    if cfg.get("do_layer_norm_before", True):
        h = _layer_norm(h, t, prefix + "final_layer_norm", cfg.get("layer_norm_eps", 1e-5))
    if prefix + "project_out.weight" in t:
        h = h @ t[prefix + "project_out.weight"].T
    return h @ t.get("lm_head.weight", t[prefix + "embed_tokens.weight"]).T


# model_type -> (embed, layer, layer_prefix, head): ids -> hidden -> ... -> logits.
ARCHITECTURES = {"llama": (llama_embed, llama_layer, llama_layer_prefix, llama_head),
                 "opt": (opt_embed, opt_layer, opt_layer_prefix, opt_head)}


def logits(t, cfg, ids):
    """ids [batch, seq] (long) -> logits [batch, seq, vocab]."""
    embed, layer, _, head = ARCHITECTURES[cfg["model_type"]]
    h = embed(t, cfg, ids)
    for i in range(cfg["num_hidden_layers"]):
        h = layer(t, cfg, i, h)
    return head(t, cfg, h)


def load_model(model_dir):
    """(tensors, config, logits function) of a single-file Hugging Face model directory."""
    with open(f"{model_dir}/config.json") as f:
        cfg = json.load(f)
    tensors = read_safetensors(f"{model_dir}/model.safetensors")
    return tensors, cfg, lambda ids: logits(tensors, cfg, ids)
