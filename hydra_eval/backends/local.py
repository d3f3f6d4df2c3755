"""The in-process engine of a transformers causal LM: score token requests, generate from token prompts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from hydra_eval.backends import decode, flat
from hydra_eval.backends.packing import PackedGroup, budget_batches, collate, pack_group
from hydra_eval.backends.tokenize import ScoreRequest, ScoreResult
from hydra_eval.errors import UserError
from hydra_eval.records import GenerationResponse


def truncate(request: ScoreRequest, max_len: int) -> ScoreRequest:
    """Drop tokens from the left so the request fits the model's window; at least one token stays unscored."""
    cut = len(request.tokens) - max_len
    if cut <= 0:
        return request
    return ScoreRequest(tokens=request.tokens[cut:], score_from=max(1, request.score_from - cut))


class Fitted(NamedTuple):
    """A prompt fitted to the model's window: the tokens kept, how many were cut from its left, and the new
    tokens it may have."""

    ids: list[int]
    cut: int
    max_new: int


def fit_prompt(prompt: list[int], max_new_tokens: int, max_len: int) -> Fitted:
    """lm-eval's generate_until: a prompt keeps its last max_len - max_new_tokens tokens, so that it and its
    new tokens fit the model's window. When the new tokens alone fill the window (arena_hard's 4096 on a
    2048-token model), the generation stops at the window instead: the prompt stays whole and the rest of the
    window is its room (its rows end as `length`, counted in length_capped); a prompt that itself fills the
    window keeps its last half."""
    room = max_len - max_new_tokens
    if room >= 1:
        if len(prompt) <= room:
            return Fitted(prompt, 0, max_new_tokens)
        return Fitted(prompt[-room:], len(prompt) - room, max_new_tokens)
    keep = len(prompt) if len(prompt) < max_len else max_len // 2
    return Fitted(prompt[len(prompt) - keep :], len(prompt) - keep, max_len - keep)


Sampling = tuple[float, float, int]  # temperature, top_p, top_k (GenerationRequest.sampling)
GREEDY: Sampling = (0.0, 1.0, 0)


def sample_probs(logits: Any, sampling: Sampling) -> Any:
    """The distribution a token is drawn from: softmax at the temperature, cut to the top_k tokens and to
    the smallest set whose probability reaches top_p (the nucleus), renormalised."""
    import torch

    temperature, top_p, top_k = sampling
    logits = logits / temperature
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of the tokens ranked above each one
        sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    positions = [text.find(s) for s in stop if s and s in text]
    return text[: min(positions)] if positions else text


class LocalLM:
    """Wraps a transformers causal LM. Scores are computed at scored positions only."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        batch_size: int,
        max_seq_len: int,
        token_budget: int = 4096,
        flat_forward: bool = True,
        kv_cache_gb: float = 4.0,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size  # rows decoded at once
        self.token_budget = token_budget  # padded tokens per scoring forward, prompt tokens per prefill forward
        self.kv_cache_bytes = int(kv_cache_gb * 2**30)  # generation's KV cache, rows' own tokens
        self.max_seq_len = max_seq_len
        self.tokens_computed = 0  # real (non-pad) tokens through the transformer body
        self.head_positions = 0  # positions through the LM head
        # Scoring runs its matmuls over real tokens only (backends/flat.py) where the architecture allows.
        self._fused = flat.fuse(model) if flat_forward and flat.supports(model) else None
        # ... and so does generation (backends/decode.py): shared prefixes once, finished rows out
        self._engine = decode.Engine(model, self._fused, token_budget) if self._fused is not None else None

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=add_special_tokens).input_ids)

    def score_groups(self, groups: Sequence[Sequence[ScoreRequest]]) -> list[list[ScoreResult]]:
        """Sum of log-probs of tokens[score_from:] for every request. Each group (the candidates of one
        question) is packed into one row with its shared prefix computed once; rows are batched by a token
        budget, longest first. Results do not depend on how rows are batched."""
        import torch

        packed = [pack_group([truncate(r, self.max_seq_len) for r in g]) for g in groups]
        results: list[list[ScoreResult]] = [[] for _ in packed]
        with torch.inference_mode():
            for batch in budget_batches([len(g.tokens) for g in packed], self.token_budget):
                flat = self._score_batch([packed[i] for i in batch])
                for i in batch:
                    n = packed[i].n_candidates
                    results[i], flat = flat[:n], flat[n:]
        return results

    def _score_batch(self, groups: Sequence[PackedGroup]) -> list[ScoreResult]:
        import torch

        device = self.device
        c = collate(groups, self.tokenizer.pad_token_id)
        self.tokens_computed += c.real_tokens
        self.head_positions += len(c.entry_target)
        if self._fused is not None:
            hidden = flat.hidden_states(
                self.model,
                self._fused,
                c.ids.to(device),
                c.positions.to(device),
                c.flat.to(device),
                c.mask.to(device),
            )
            entries = hidden[c.entry_flat.to(device)]
        else:
            hidden = self.model.get_decoder()(
                input_ids=c.ids.to(device), attention_mask=c.mask.to(device), position_ids=c.positions.to(device)
            ).last_hidden_state
            entries = hidden[c.entry_row.to(device), c.entry_col.to(device)]
        logprobs, greedy = self._head(entries, c.entry_target.to(device))
        pair_entry, pair_cand = c.pair_entry.to(device), c.pair_cand.to(device)
        sums = torch.zeros(c.n_candidates, dtype=torch.float64, device=device)
        sums.index_add_(0, pair_cand, logprobs[pair_entry].double())
        misses = torch.zeros(c.n_candidates, dtype=torch.long, device=device)
        misses.index_add_(0, pair_cand, (~greedy[pair_entry]).long())
        counts = torch.bincount(pair_cand, minlength=c.n_candidates)
        return [
            ScoreResult(logprob=float(sums[j]), n_scored=int(counts[j]), greedy=int(misses[j]) == 0)
            for j in range(c.n_candidates)
        ]

    def _head(self, hidden: Any, targets: Any, chunk: int = 256) -> tuple[Any, Any]:
        """Log-prob of each target and whether it is the argmax, through the LM head in chunks of positions
        so the (positions x vocab) logits never exist all at once."""
        import torch

        head = self.model.get_output_embeddings()
        logprobs, greedy = [], []
        for start in range(0, hidden.shape[0], chunk):
            logits = head(hidden[start : start + chunk]).float()
            target = targets[start : start + chunk, None]
            # log_softmax is one fused kernel, about twice as fast as max / exp / sum / log done separately
            logprobs.append(torch.log_softmax(logits, dim=-1).gather(1, target).squeeze(1))
            greedy.append(logits.gather(1, target).squeeze(1) >= logits.amax(dim=-1))
        return torch.cat(logprobs), torch.cat(greedy)

    def count_tokens(self, texts: Sequence[str], special: bool = False) -> list[int]:
        return [len(self.encode(t, add_special_tokens=special)) if t or special else 0 for t in texts]

    def generate(
        self,
        encoded: Sequence[list[int]],
        max_new_tokens: int,
        stop: Sequence[str],
        sampling: Sampling = GREEDY,
        seeds: Sequence[int] | None = None,
    ) -> list[GenerationResponse]:
        """Generation; text is cut at the first stop string. Greedy, or with temperature > 0 sampled, each row
        from its own seed (so a row's sample does not depend on which rows share its batch)."""
        empty = [i for i, x in enumerate(encoded) if not x]
        if empty:
            raise UserError(
                f"{len(empty)} generation prompt(s) have no tokens (first: request {empty[0]}): the dataset's "
                "template rendered an empty prompt"
            )
        if self._engine is not None and max_new_tokens > 0:
            return self._generate_engine(encoded, max_new_tokens, stop, sampling, seeds)
        import torch

        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        results: list[GenerationResponse | None] = [None] * len(encoded)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                for i, g in zip(
                    chunk,
                    self._generate_batch(
                        [encoded[i] for i in chunk],
                        max_new_tokens,
                        stop,
                        sampling,
                        [seeds[i] for i in chunk] if seeds is not None else None,
                    ),
                    strict=True,
                ):
                    results[i] = g
        return [g for g in results if g is not None]

    def _generate_engine(
        self,
        encoded: Sequence[list[int]],
        max_new_tokens: int,
        stop: Sequence[str],
        sampling: Sampling,
        seeds: Sequence[int] | None,
    ) -> list[GenerationResponse]:
        """The padding-free engine (backends/decode.py) with the rules of _generate_batch: a row ends at an
        end-of-sequence token (not counted), a stop string in its text, or max_new_tokens."""
        import torch

        assert self._engine is not None
        tok, stop_ids = self.tokenizer, self._stop_ids()
        new_tokens: list[list[int]] = [[] for _ in encoded]
        reasons = ["length"] * len(encoded)

        def choose(logits: Any, rows: list[int]) -> list[int]:
            chosen = logits.argmax(dim=-1)
            if sampling[0] > 0:
                probs = sample_probs(logits, sampling).cpu()
                for k, row in enumerate(rows):
                    step = len(new_tokens[row])
                    g = torch.Generator().manual_seed((seeds[row] if seeds else row) * 100003 + step)
                    chosen[k] = int(torch.multinomial(probs[k], 1, generator=g))
            return [int(t) for t in chosen.tolist()]

        def emit(row: int, token: int) -> bool:
            if token in stop_ids:
                reasons[row] = "eos"
                return False
            new_tokens[row].append(token)
            if stop and any(s in tok.decode(new_tokens[row], skip_special_tokens=True) for s in stop):
                reasons[row] = "stop_string"
                return False
            return len(new_tokens[row]) < max_new_tokens

        before = self._engine.tokens_computed
        self._engine.run(encoded, max_new_tokens, self.batch_size, self.kv_cache_bytes, choose, emit)
        self.tokens_computed += self._engine.tokens_computed - before
        return [
            GenerationResponse(
                cut_at_stop(tok.decode(tokens, skip_special_tokens=True), stop),
                reason,
                n_prompt_tokens=len(x),
                n_new_tokens=len(tokens),
            )
            for x, tokens, reason in zip(encoded, new_tokens, reasons, strict=True)
        ]

    def _stop_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        configured = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids.update(configured if isinstance(configured, list) else [configured])
        return {i for i in ids if i is not None}

    def _generate_batch(
        self,
        batch: Sequence[list[int]],
        max_new_tokens: int,
        stop: Sequence[str],
        sampling: Sampling = GREEDY,
        seeds: Sequence[int] | None = None,
    ) -> list[GenerationResponse]:
        """Greedy decoding (or sampling) with a KV cache; a row leaves the batch (and the cache) as soon as it
        emits an end-of-sequence token, reaches max_new_tokens or contains a stop string."""
        import torch
        from transformers import DynamicCache

        tok, device, stop_ids = self.tokenizer, self.device, self._stop_ids()
        width = max(len(x) for x in batch)
        ids = torch.full((len(batch), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for j, x in enumerate(batch):
            ids[j, width - len(x) :] = torch.tensor(x)
            mask[j, width - len(x) :] = 1
        ids, mask = ids.to(device), mask.to(device)
        position = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        logits = self.model(
            input_ids=ids, attention_mask=mask, position_ids=position, past_key_values=cache, logits_to_keep=1
        ).logits
        self.tokens_computed += sum(len(x) for x in batch)
        active = list(range(len(batch)))
        new_tokens: list[list[int]] = [[] for _ in batch]
        reasons = ["length"] * len(batch)  # until an end-of-sequence token or a stop string ends the row
        texts = [""] * len(batch)
        last = position[:, -1]
        for step in range(max_new_tokens):
            chosen = logits[:, -1].argmax(dim=-1)
            if sampling[0] > 0:
                probs = sample_probs(logits[:, -1].float(), sampling).cpu()
                for k, row in enumerate(active):
                    g = torch.Generator().manual_seed((seeds[row] if seeds else row) * 100003 + step)
                    chosen[k] = int(torch.multinomial(probs[k], 1, generator=g))
            keep = []
            for k, row in enumerate(active):
                token = int(chosen[k])
                if token in stop_ids:
                    reasons[row] = "eos"
                    continue
                new_tokens[row].append(token)
                if stop:
                    texts[row] = tok.decode(new_tokens[row], skip_special_tokens=True)
                    if any(s in texts[row] for s in stop):
                        reasons[row] = "stop_string"
                        continue
                if len(new_tokens[row]) < max_new_tokens:
                    keep.append(k)
            if not keep:
                break
            if len(keep) < len(active):
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                mask, last, chosen = mask[index], last[index], chosen[index]
                active = [active[k] for k in keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            last = last + 1
            logits = self.model(
                input_ids=chosen[:, None], attention_mask=mask, position_ids=last[:, None], past_key_values=cache
            ).logits
            self.tokens_computed += len(active)
        generations = []
        for x, tokens, reason in zip(batch, new_tokens, reasons, strict=True):
            text = cut_at_stop(tok.decode(tokens, skip_special_tokens=True), stop)
            generations.append(GenerationResponse(text, reason, n_prompt_tokens=len(x), n_new_tokens=len(tokens)))
        return generations
