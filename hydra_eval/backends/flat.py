"""Padding-free forward of a Llama-architecture decoder over packed scoring rows.

transformers' forward runs every matmul over the padded (rows x longest row) batch. Here the matmuls run over
the real tokens only, laid end to end; only attention, which needs each row's own keys, sees the padded layout
(q, k and v are scattered into it and the output gathered back). The projections that read the same input are
fused into one matmul each (q|k|v, and gate|up): the weights become views into one tensor, so the model
keeps working unchanged everywhere else (generation) and no weight is held twice.

The arithmetic is the model's own: the same RMSNorm, rotary embedding (the model's rotary module gives cos and
sin), scaled dot-product attention and SiLU MLP. Scores agree with transformers' forward to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SUPPORTED = {"llama"}


def supports(model: Any) -> bool:
    """Llama-architecture causal LMs with the plain attention/MLP this forward implements."""
    cfg = getattr(model, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) not in SUPPORTED:
        return False
    if not (
        getattr(cfg, "pretraining_tp", 1) == 1
        and getattr(cfg, "hidden_act", "silu") == "silu"
        and not getattr(cfg, "attention_bias", False)
        and not getattr(cfg, "mlp_bias", False)
    ):
        return False
    return all(_plain_linear(layer) for layer in model.get_decoder().layers)


def _plain_linear(layer: Any) -> bool:
    """Ordinary float weights on a real device: not quantized (bitsandbytes, GPTQ) nor offloaded (meta)."""
    import torch

    attn, mlp = layer.self_attn, layer.mlp
    linears = [attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj]
    return all(
        type(lin) is torch.nn.Linear and lin.weight.is_floating_point() and lin.weight.device.type != "meta"
        for lin in linears
    )


@dataclass(frozen=True)
class FusedLayer:
    norm1: Any  # (d,) weights and eps of the two RMSNorms
    norm2: Any
    eps: float
    qkv: Any  # (q + 2 kv, d): views of it are q_proj/k_proj/v_proj's weights
    o: Any
    gate_up: Any  # (2 i, d)
    down: Any


def fuse(model: Any) -> list[FusedLayer]:
    """One tensor per fused projection; the modules' weights are replaced by views into it."""
    import torch

    layers = []
    for layer in model.get_decoder().layers:
        attn, mlp = layer.self_attn, layer.mlp
        qkv = _fuse_weights([attn.q_proj, attn.k_proj, attn.v_proj], torch)
        gate_up = _fuse_weights([mlp.gate_proj, mlp.up_proj], torch)
        layers.append(
            FusedLayer(
                norm1=layer.input_layernorm.weight,
                norm2=layer.post_attention_layernorm.weight,
                eps=layer.input_layernorm.variance_epsilon,
                qkv=qkv,
                o=attn.o_proj.weight,
                gate_up=gate_up,
                down=mlp.down_proj.weight,
            )
        )
    return layers


def _fuse_weights(linears: list[Any], torch: Any) -> Any:
    fused = torch.cat([lin.weight.detach() for lin in linears], dim=0).contiguous()
    start = 0
    for lin in linears:
        n = lin.weight.shape[0]
        lin.weight = torch.nn.Parameter(fused[start : start + n], requires_grad=False)
        start += n
    return fused


def hidden_states(model: Any, layers: list[FusedLayer], ids: Any, positions: Any, flat: Any, mask: Any) -> Any:
    """Final-norm hidden states (N, d) of the N real tokens ids[flat] (a flat index into the padded (B, T)
    `ids`); `mask` is the (B, 1, T, T) bool attention mask of the padded layout."""
    import torch
    import torch.nn.functional as F

    # an additive float mask, made once: SDPA would convert a bool mask again in every layer
    mask = torch.zeros(mask.shape, dtype=model.dtype, device=mask.device).masked_fill_(~mask, float("-inf"))

    decoder = model.get_decoder()
    cfg = model.config
    n_heads, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    q_size, kv_size = n_heads * head_dim, n_kv * head_dim
    batch, width = ids.shape
    n = flat.shape[0]

    x = decoder.embed_tokens(ids.reshape(-1)[flat])
    cos, sin = decoder.rotary_emb(x[None], positions.reshape(-1)[flat][None])
    cos, sin = cos[0][:, None, :], sin[0][:, None, :]  # (N, 1, head_dim), broadcast over heads

    def rope(t: Any) -> Any:
        half = t.shape[-1] // 2
        rotated = torch.cat((-t[..., half:], t[..., :half]), dim=-1)
        return t * cos + rotated * sin

    def padded(t: Any, heads: int) -> Any:  # (N, heads, hd) -> (B, heads, T, hd), zeros at padding
        out = t.new_zeros((batch * width, heads, head_dim))
        out[flat] = t
        return out.view(batch, width, heads, head_dim).transpose(1, 2)

    for layer in layers:
        h = F.rms_norm(x, (x.shape[-1],), layer.norm1, layer.eps)
        qkv = F.linear(h, layer.qkv)
        q = rope(qkv[:, :q_size].view(n, n_heads, head_dim))
        k = rope(qkv[:, q_size : q_size + kv_size].view(n, n_kv, head_dim))
        v = qkv[:, q_size + kv_size :].view(n, n_kv, head_dim)
        attn = F.scaled_dot_product_attention(
            padded(q, n_heads), padded(k, n_kv), padded(v, n_kv), attn_mask=mask, enable_gqa=n_kv != n_heads
        )
        attn = attn.transpose(1, 2).reshape(batch * width, q_size)[flat]
        x = x + F.linear(attn, layer.o)
        h = F.rms_norm(x, (x.shape[-1],), layer.norm2, layer.eps)
        gate_up = F.linear(h, layer.gate_up)
        inner = gate_up.shape[-1] // 2
        x = x + F.linear(F.silu(gate_up[:, :inner]) * gate_up[:, inner:], layer.down)
    return decoder.norm(x)
