"""Generation without padding for the Llama-architecture models that backends/flat.py runs.

transformers' loop decodes fixed batches of left-padded rows: every prompt is computed whole (the eight
GSM8K exemplars once per question), each step copies the growing KV cache, and a batch runs until its last
row ends. Here:

- Rows sharing a prompt prefix (few-shot exemplars, a chat template's system turn) form a group; the prefix
  is computed once and its keys and values are shared: a row's attention is the prefix part and the row's own
  part, merged through their log-sum-exp (what FlashInfer calls cascade attention).
- Each row's own keys and values live in a slot of a preallocated cache (no copy per step). A finished row
  leaves at once (the last slot moves into its place, so the active rows are always the first slots and
  attention reads a view), and queued rows are prefilled into the free slots, their suffixes packed end to end.
- All matmuls run over real tokens only (backends/flat.run_layers); only attention sees a (rows x tokens) grid.

Greedy outputs are those of one-row-at-a-time generation up to float rounding (tests/test_engine.py compares
them with transformers' generate); sampled rows draw from their own seeds as in backends/local.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hydra_eval.backends import flat

Choose = Callable[[Any, list[int]], list[int]]  # (logits (B, vocab), row ids) -> next token per row
Emit = Callable[[int, int], bool]  # (row, token) -> whether the row goes on


def skinny_linear(x: Any, weight: Any) -> Any:
    """x @ weight.T. For the few rows of a decode step, weight @ x.T runs up to twice as fast on CPU, and up to
    five times when x is made contiguous first (oneDNN's kernels for a skinny left operand are slow, and so
    is MKL's for a column-major right one; docs/benchmarks.md): the result is its transposed view."""
    import torch
    import torch.nn.functional as F

    rows = x.shape[0]
    if rows > SKINNY_ROWS or x.device.type != "cpu":
        return F.linear(x, weight)
    if rows == 1:  # a single row goes through a matrix-vector kernel that streams the weight at half speed
        return torch.mm(weight, x.expand(2, -1).contiguous().t())[:, :1].t()
    return torch.mm(weight, x.contiguous().t()).t()


class PackedLinear:
    """x @ weight.T through oneDNN with each weight reordered once into its blocked layout (what torch's
    compiler does for frozen CPU models): 2-4x faster than F.linear on this host's cores at every row count
    (docs/benchmarks.md). Results differ from F.linear's by float rounding (~1e-5 relative). A second copy
    of the weights lives while the engine runs; weights it has not packed go through skinny_linear."""

    def __init__(self, weights: list[Any], rows_hint: int = 128) -> None:
        import torch

        self.packed = {w.data_ptr(): torch.ops.mkldnn._reorder_linear_weight(w, rows_hint) for w in weights}

    @staticmethod
    def available(model: Any) -> bool:
        import torch

        param = next(model.parameters())
        return bool(
            param.device.type == "cpu"
            and param.dtype in (torch.float32, torch.bfloat16)
            and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
        )

    def __call__(self, x: Any, weight: Any) -> Any:
        import torch

        packed = self.packed.get(weight.data_ptr())
        if packed is None:
            return skinny_linear(x, weight)
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), packed, None, "none", [], "")


SKINNY_ROWS = 256


def fused_attention(device: Any) -> bool:
    """Attention through flash_cpu (on CPU), else through matmuls and an explicit softmax (any device)."""
    return bool(device.type == "cpu")


def flash_cpu(q: Any, k: Any, v: Any, scale: float, mask: Any = None) -> tuple[Any, Any]:
    """Attention output (B, H, L, hd) and log-sum-exp (B, H, L) from torch's fused CPU kernel (what
    F.scaled_dot_product_attention runs on CPU), which never holds the (L x S) scores in memory. The kernel
    reads its inputs as if their last dimension were contiguous, without checking: they are made so here
    (q from a decode step is a transposed view, and the kernel gave wrong numbers from it)."""
    import torch

    def rows(t: Any) -> Any:
        return t if t.stride(-1) == 1 else t.contiguous()

    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        rows(q), rows(k), rows(v), 0.0, False, attn_mask=mask, scale=scale
    )


@dataclass(frozen=True)
class Group:
    prefix: int  # tokens every row of the group starts with (each row keeps at least one of its own)
    rows: list[int]


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def group_rows(prompts: Sequence[Sequence[int]], overhead: int = 256, depth: int = 64) -> list[Group]:
    """Rows in token order, cut into runs that share a prefix, each computed once. Rows sharing a longer prefix
    than their neighbours become a group of their own where the tokens that saves outweigh `overhead` (a
    prefix forward, and one more attention per step while rows of two groups are active); the others stay in
    one group under what they all share. GSM8K's questions are one group under their eight exemplars, BBH's
    subtasks one group each, SIQA one group under the chat template's system turn. (A tree over the sorted
    rows, split where neighbours share least, `depth` levels deep.)"""
    order = sorted(range(len(prompts)), key=lambda i: list(prompts[i]))
    lcp = [common_prefix(prompts[a], prompts[b]) for a, b in zip(order, order[1:], strict=False)]

    def own(rows: list[int], prefix: int) -> int:
        return sum(len(prompts[r]) - prefix for r in rows)

    def alone(rows: list[int], shared: int) -> Group:
        return Group(min(shared, min(len(prompts[r]) for r in rows) - 1), rows)

    def best(lo: int, hi: int, level: int) -> tuple[int, list[Group]]:
        """Tokens computed (plus overheads) and the groups of rows order[lo:hi]."""
        rows = order[lo:hi]
        shared = min(lcp[lo : hi - 1], default=len(prompts[rows[0]]))
        if len(rows) == 1 or level == depth:
            group = alone(rows, shared)
            return group.prefix + own(rows, group.prefix) + overhead, [group]
        cuts = [lo] + [i + 1 for i in range(lo, hi - 1) if lcp[i] == shared] + [hi]
        cost = 0
        groups: list[Group] = []
        rest: list[int] = []
        for a, b in zip(cuts, cuts[1:], strict=False):
            part_cost, part = best(a, b, level + 1)
            if part_cost < own(order[a:b], shared):
                cost, groups = cost + part_cost, groups + part
            else:  # cheaper under the prefix all rows here share
                cost, rest = cost + own(order[a:b], shared), rest + order[a:b]
        if rest:
            cost += shared + overhead
            groups.append(alone(rest, shared))
        return cost, groups

    return best(0, len(order), 0)[1] if order else []


@dataclass
class Prefix:
    length: int
    k: list[Any]  # per layer (kv heads, length, head dim)
    v: list[Any]
    users: int  # rows of the group not finished yet


@dataclass
class Slot:
    row: int
    prefix: int  # group index
    held: int  # the row's own tokens in the cache
    pending: int  # the token chosen last, fed at the next step


@dataclass
class Partial:
    """Attention over part of the keys: running max, sum of exponentials, unnormalised output."""

    m: Any
    total: Any
    out: Any

    @staticmethod
    def of(scores: Any, values: Any) -> Partial:
        import torch

        m = scores.amax(dim=-1, keepdim=True)
        e = torch.exp(scores - m)
        return Partial(m, e.sum(dim=-1, keepdim=True), torch.matmul(e.to(values.dtype), values))

    def merge(self, other: Partial) -> Partial:
        import torch

        m = torch.maximum(self.m, other.m)
        a, b = torch.exp(self.m - m), torch.exp(other.m - m)
        out = self.out * a.to(self.out.dtype) + other.out * b.to(self.out.dtype)
        return Partial(m, self.total * a + other.total * b, out)


class Part:
    """Rows of one forward in slots start, start + 1, ...: row b brings lengths[b] tokens after the offsets[b]
    it holds (decoding rows 1, prefilled rows their own prompt tokens). Its attention runs on a (rows x
    width) grid of queries: the row's own keys in its slot, merged with its group's shared prefix."""

    def __init__(self, engine: Engine, start: int, lengths: list[int], offsets: list[int], groups: list[int]):
        import torch

        self.engine = engine
        self.start = start
        self.rows = len(lengths)
        self.width = max(lengths)
        self.keys = max(o + n for o, n in zip(offsets, lengths, strict=True))
        self.n_tokens = sum(lengths)
        device = engine.device
        s = engine.shape
        self.group = s.n_heads // s.n_kv
        cells = [(b, offsets[b] + t) for b in range(self.rows) for t in range(lengths[b])]
        self.slot = torch.tensor([start + b for b, _ in cells], device=device)
        self.held = torch.tensor([i for _, i in cells], device=device)
        prefix_len = torch.tensor([engine.prefixes[g].length for g in groups], device=device)
        self.positions = prefix_len[self.slot - start] + self.held
        self.grid = None  # each token's cell in the (rows x width) grid, when a row brings more than one
        if self.width > 1:
            self.grid = torch.tensor([b * self.width + t - offsets[b] for b, t in cells], device=device)
        # key j is visible to the query in grid cell (b, t) when j <= offsets[b] + t (clamped for empty cells)
        first = torch.tensor(offsets, device=device)[:, None]
        last = first + torch.tensor(lengths, device=device)[:, None] - 1
        query_at = torch.minimum(first + torch.arange(self.width, device=device)[None], last)
        visible = torch.arange(self.keys, device=device)[None, None] <= query_at[:, :, None]
        bias = torch.zeros(visible.shape, device=device).masked_fill_(~visible, float("-inf"))
        shape = (self.rows, 1, self.group * self.width, self.keys)
        self.bias = bias[:, None, None].expand(self.rows, 1, self.group, self.width, self.keys).reshape(shape)
        distinct = sorted(set(groups))  # rows attending to each shared prefix: None for all of them
        self.by_prefix: dict[int, Any] = (
            {distinct[0]: None} if len(distinct) == 1 and len(set(groups)) == 1 else {}
        )
        if not self.by_prefix:
            for g in distinct:
                self.by_prefix[g] = torch.tensor([b for b, h in enumerate(groups) if h == g], device=device)

    def attend(self, layer: int, q: Any, k: Any, v: Any) -> Any:
        """Stores the part's keys and values in its slots; attention output (tokens, heads * hd)."""
        import torch

        e, s, rows, width, group = self.engine, self.engine.shape, self.rows, self.width, self.group
        e.k[layer][self.slot, :, self.held] = k
        e.v[layer][self.slot, :, self.held] = v
        if self.grid is None:
            qg = q.reshape(rows, s.n_kv, group, s.head_dim)
        else:
            cells = q.new_zeros((rows * width, s.n_heads, s.head_dim))
            cells[self.grid] = q
            qg = cells.view(rows, width, s.n_kv, group, s.head_dim).permute(0, 2, 3, 1, 4)
            qg = qg.reshape(rows, s.n_kv, group * width, s.head_dim)
        own = slice(self.start, self.start + rows)
        own_k, own_v = e.k[layer][own, :, : self.keys], e.v[layer][own, :, : self.keys]
        if fused_attention(qg.device):  # torch's fused kernel, which also gives the log-sum-exp
            out, lse = flash_cpu(qg, own_k, own_v, e.scale, self.bias.to(qg.dtype))
            lse = lse[..., None].float()
            part = Partial(lse, torch.ones_like(lse), out)
        else:
            part = Partial.of(torch.matmul(qg, own_k.transpose(-1, -2)).float() * e.scale + self.bias, own_v)
        for g, sel in self.by_prefix.items():
            part = e.with_prefix(part, qg, e.prefixes[g], layer, sel)
        out = part.out / part.total.to(part.out.dtype)  # (rows, kv heads, group * width, hd)
        out = out.view(rows, s.n_kv, group, width, s.head_dim).permute(0, 3, 1, 2, 4).reshape(rows * width, -1)
        return out if self.grid is None else out[self.grid]


class Engine:
    """Decodes prompts with at most `max_rows` rows at once within a KV cache budget; `choose` picks each
    step's tokens and `emit` takes them, saying whether a row goes on.

    Each step is one forward: every active row's next token, and the prompt tokens of the queued rows that
    enter free slots, up to `token_budget` tokens in all (decoding rows ride along with the prefill's large
    matmuls, as vLLM's chunked prefill does)."""

    def __init__(self, model: Any, layers: list[flat.FusedLayer], token_budget: int) -> None:
        self.model = model
        self.layers = layers
        self.shape = flat.shape(model)
        self.scale = getattr(model.get_decoder().layers[0].self_attn, "scaling", self.shape.head_dim**-0.5)
        self.token_budget = token_budget  # tokens per forward, decoding rows included
        self._linear: Any = None  # made on the first run: packing copies the weights
        self.tokens_computed = 0  # real tokens through the transformer body
        self.k: list[Any] = []
        self.v: list[Any] = []
        self.prefixes: dict[int, Prefix] = {}

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    @property
    def linear(self) -> Any:
        if self._linear is None:
            self._linear = skinny_linear
            if PackedLinear.available(self.model):
                head = self.model.get_output_embeddings()
                weights = [w for layer in self.layers for w in (layer.qkv, layer.o, layer.gate_up, layer.down)]
                self._linear = PackedLinear(weights + ([head.weight] if head.bias is None else []))
        return self._linear

    def kv_bytes_per_token(self) -> int:
        return len(self.layers) * 2 * self.shape.kv_size * next(self.model.parameters()).element_size()

    def run(
        self,
        prompts: Sequence[list[int]],
        max_new_tokens: int,
        max_rows: int,
        kv_bytes: int,
        choose: Choose,
        emit: Emit,
    ) -> None:
        import torch

        groups = group_rows(prompts)
        # group by group, longest prompts first within a group: rows prefilled together have similar lengths
        queue = [
            (g, r) for g, group in enumerate(groups) for r in sorted(group.rows, key=lambda r: -len(prompts[r]))
        ]
        queue.reverse()  # popped from the end
        length = max(len(prompts[row]) - groups[g].prefix for g, row in queue) + max_new_tokens
        slots = max(1, min(max_rows, len(queue), kv_bytes // (length * self.kv_bytes_per_token())))
        param = next(self.model.parameters())
        s = self.shape
        # zeros, not empty: a masked key still meets a zero-probability product, and 0 * NaN would be NaN
        self.k = [param.new_zeros((slots, s.n_kv, length, s.head_dim)) for _ in self.layers]
        self.v = [param.new_zeros((slots, s.n_kv, length, s.head_dim)) for _ in self.layers]
        active: list[Slot] = []
        try:
            with torch.inference_mode():
                while queue or active:
                    admitted = self._admit(
                        queue, slots - len(active), self.token_budget - len(active), groups, prompts
                    )
                    logits = self._step(active, admitted, prompts, groups)
                    active.extend(admitted)
                    tokens = choose(logits, [a.row for a in active])
                    ended = [not self._take(a, t, emit) for a, t in zip(active, tokens, strict=True)]
                    self._release(active, [i for i, end in enumerate(ended) if end])
        finally:
            self.k, self.v, self.prefixes = [], [], {}

    def _admit(
        self,
        queue: list[tuple[int, int]],
        free: int,
        budget: int,
        groups: list[Group],
        prompts: Sequence[list[int]],
    ) -> list[Slot]:
        """Queued rows for the free slots, their own prompt tokens within `budget` (at least one row)."""
        admitted: list[Slot] = []
        while queue and len(admitted) < free:
            g, row = queue[-1]
            own = len(prompts[row]) - groups[g].prefix
            if admitted and own > budget:
                break
            queue.pop()
            budget -= own
            if g not in self.prefixes:
                self.prefixes[g] = self._compute_prefix(prompts[row][: groups[g].prefix], len(groups[g].rows))
            admitted.append(Slot(row, g, 0, -1))
        return admitted

    def _compute_prefix(self, tokens: list[int], users: int) -> Prefix:
        import torch
        import torch.nn.functional as F

        s = self.shape
        prefix = Prefix(len(tokens), [], [], users)
        if not tokens:
            return prefix

        def attend(_: int, q: Any, k: Any, v: Any) -> Any:
            k, v = k.transpose(0, 1).contiguous(), v.transpose(0, 1).contiguous()  # (kv heads, P, hd)
            prefix.k.append(k)
            prefix.v.append(v)
            out = F.scaled_dot_product_attention(
                q.transpose(0, 1)[None], k[None], v[None], is_causal=True, enable_gqa=s.n_kv != s.n_heads
            )
            return out[0].transpose(0, 1).reshape(len(tokens), s.q_size)

        ids = torch.tensor(tokens, device=self.device)
        positions = torch.arange(len(tokens), device=self.device)
        flat.run_layers(self.model, self.layers, ids, positions, attend, self.linear)
        self.tokens_computed += len(tokens)
        return prefix

    def _step(
        self, active: list[Slot], admitted: list[Slot], prompts: Sequence[list[int]], groups: list[Group]
    ) -> Any:
        """One forward: the active rows' pending tokens, then the admitted rows' own prompt tokens (into the
        slots after the active ones). Logits (active + admitted, vocab) of each row's last token."""
        import torch

        parts, ids, ends = [], [], []
        if active:
            parts.append(Part(self, 0, [1] * len(active), [a.held for a in active], [a.prefix for a in active]))
            ids += [a.pending for a in active]
            ends += list(range(len(active)))
        if admitted:
            own = [prompts[a.row][groups[a.prefix].prefix :] for a in admitted]
            lengths = [len(t) for t in own]
            parts.append(Part(self, len(active), lengths, [0] * len(own), [a.prefix for a in admitted]))
            for tokens in own:
                ids += tokens
                ends.append(len(ids) - 1)
        positions = torch.cat([part.positions for part in parts])

        def attend(layer: int, q: Any, k: Any, v: Any) -> Any:
            outs, start = [], 0
            for part in parts:
                end = start + part.n_tokens
                outs.append(part.attend(layer, q[start:end], k[start:end], v[start:end]))
                start = end
            return outs[0] if len(outs) == 1 else torch.cat(outs)

        ids_t = torch.tensor(ids, device=self.device)
        hidden = flat.run_layers(self.model, self.layers, ids_t, positions, attend, self.linear)
        self.tokens_computed += len(ids)
        for a in active:
            a.held += 1
        for a, tokens in zip(admitted, own if admitted else [], strict=True):
            a.held = len(tokens)
        return self._logits(hidden[torch.tensor(ends, device=self.device)])

    def _logits(self, hidden: Any) -> Any:
        head = self.model.get_output_embeddings()
        if type(head).__name__ == "Linear" and head.bias is None:
            return self.linear(hidden, head.weight).float()
        return head(hidden).float()

    @staticmethod
    def _take(slot: Slot, token: int, emit: Emit) -> bool:
        slot.pending = token
        return emit(slot.row, token)

    def _release(self, active: list[Slot], done: list[int]) -> None:
        """Finished rows leave; the last active slot moves into each freed one, so the active rows stay first."""
        for index in sorted(done, reverse=True):
            prefix = self.prefixes[active[index].prefix]
            prefix.users -= 1
            if prefix.users == 0:
                del self.prefixes[active[index].prefix]
            last = len(active) - 1
            if index != last:
                held = active[last].held
                for k, v in zip(self.k, self.v, strict=True):
                    k[index, :, :held] = k[last, :, :held]
                    v[index, :, :held] = v[last, :, :held]
                active[index] = active[last]
            active.pop()

    def with_prefix(self, part: Partial, qg: Any, prefix: Prefix, layer: int, sel: Any) -> Partial:
        """`part` merged with the attention of rows `sel` (None: all) over the group's shared prefix."""
        import torch

        if prefix.length == 0:
            return part
        q = qg if sel is None else qg[sel]
        rows, kv, m, hd = q.shape
        # all the rows' queries of a kv head at once: the prefix is read once, not once per row
        q = q.transpose(0, 1).reshape(kv, rows * m, hd)
        if fused_attention(q.device):  # no (queries x prefix) scores in memory
            out, lse = flash_cpu(q[None], prefix.k[layer][None], prefix.v[layer][None], self.scale)
            lse = lse[0, :, :, None].float()
            shared = Partial(lse, torch.ones_like(lse), out[0])
        else:
            scores = torch.bmm(q, prefix.k[layer].transpose(1, 2)).float() * self.scale
            shared = Partial.of(scores, prefix.v[layer])

        def back(t: Any) -> Any:  # (kv, rows * m, x) -> (rows, kv, m, x)
            return t.view(kv, rows, m, -1).transpose(0, 1)

        shared = Partial(back(shared.m), back(shared.total), back(shared.out))
        if sel is None:
            return part.merge(shared)
        merged = Partial(part.m[sel], part.total[sel], part.out[sel]).merge(shared)
        part.m[sel], part.total[sel], part.out[sel] = merged.m, merged.total, merged.out
        return part
