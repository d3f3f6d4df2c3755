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

from collections.abc import Callable
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


Attend = Callable[[int, Any, Any, Any], Any]  # (layer index, q, k, v) -> attention output (N, heads * head_dim)
Linear = Callable[[Any, Any], Any]  # (x (N, in), weight (out, in)) -> (N, out)


@dataclass(frozen=True)
class Shape:
    n_heads: int
    n_kv: int
    head_dim: int

    @property
    def q_size(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.n_kv * self.head_dim


def shape(model: Any) -> Shape:
    cfg = model.config
    n_heads = cfg.num_attention_heads
    return Shape(n_heads, cfg.num_key_value_heads, getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads)


def run_layers(
    model: Any, layers: list[FusedLayer], ids: Any, positions: Any, attend: Attend, linear: Linear | None = None
) -> Any:
    """Final-norm hidden states (N, d) of N tokens laid end to end, at the given positions. Every matmul runs
    over the N real tokens (through `linear`, F.linear by default); `attend` gets each layer's q (N, heads, hd),
    k and v (N, kv heads, hd), rotary embedding applied, and returns the attention output (N, heads * hd)
    however the tokens see each other."""
    import torch
    import torch.nn.functional as F

    linear = linear or F.linear

    decoder = model.get_decoder()
    s = shape(model)
    n = ids.shape[0]
    x = decoder.embed_tokens(ids)
    cos, sin = decoder.rotary_emb(x[None], positions[None])
    cos, sin = cos[0][:, None, :], sin[0][:, None, :]  # (N, 1, head_dim), broadcast over heads

    def rope(t: Any) -> Any:
        half = t.shape[-1] // 2
        rotated = torch.cat((-t[..., half:], t[..., :half]), dim=-1)
        return t * cos + rotated * sin

    for index, layer in enumerate(layers):
        h = F.rms_norm(x, (x.shape[-1],), layer.norm1, layer.eps)
        qkv = linear(h, layer.qkv)
        q = rope(qkv[:, : s.q_size].reshape(n, s.n_heads, s.head_dim))
        k = rope(qkv[:, s.q_size : s.q_size + s.kv_size].reshape(n, s.n_kv, s.head_dim))
        v = qkv[:, s.q_size + s.kv_size :].reshape(n, s.n_kv, s.head_dim)
        x = x + linear(attend(index, q, k, v), layer.o)
        h = F.rms_norm(x, (x.shape[-1],), layer.norm2, layer.eps)
        gate_up = linear(h, layer.gate_up)
        inner = gate_up.shape[-1] // 2
        x = x + linear(F.silu(gate_up[:, :inner]) * gate_up[:, inner:], layer.down)
    return decoder.norm(x)


def hidden_states(model: Any, layers: list[FusedLayer], ids: Any, positions: Any, flat: Any, mask: Any) -> Any:
    """Final-norm hidden states (N, d) of the N real tokens ids[flat] (a flat index into the padded (B, T)
    `ids`); `mask` is the (B, 1, T, T) bool attention mask of the padded layout: attention alone runs padded."""
    import torch
    import torch.nn.functional as F

    # an additive float mask, made once: SDPA would convert a bool mask again in every layer
    mask = torch.zeros(mask.shape, dtype=model.dtype, device=mask.device).masked_fill_(~mask, float("-inf"))
    s = shape(model)
    batch, width = ids.shape

    def padded(t: Any, heads: int) -> Any:  # (N, heads, hd) -> (B, heads, T, hd), zeros at padding
        out = t.new_zeros((batch * width, heads, s.head_dim))
        out[flat] = t
        return out.view(batch, width, heads, s.head_dim).transpose(1, 2)

    def attend(_: int, q: Any, k: Any, v: Any) -> Any:
        out = F.scaled_dot_product_attention(
            padded(q, s.n_heads),
            padded(k, s.n_kv),
            padded(v, s.n_kv),
            attn_mask=mask,
            enable_gqa=s.n_kv != s.n_heads,
        )
        return out.transpose(1, 2).reshape(batch * width, s.q_size)[flat]

    return run_layers(model, layers, ids.reshape(-1)[flat], positions.reshape(-1)[flat], attend)
