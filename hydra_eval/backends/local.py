"""A local causal LM (transformers) behind two batch methods: score token requests, generate text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

from hydra_eval.backends.packing import PackedGroup, budget_batches, collate, pack_group
from hydra_eval.records import Generation, ScoreRequest, ScoreResult


def truncate(request: ScoreRequest, max_len: int) -> ScoreRequest:
    """Drop tokens from the left so the request fits the model's window; at least one token stays unscored."""
    cut = len(request.tokens) - max_len
    if cut <= 0:
        return request
    return ScoreRequest(tokens=request.tokens[cut:], score_from=max(1, request.score_from - cut))


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
        progress: bool = True,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size  # rows per generation batch
        self.token_budget = token_budget  # padded tokens per scoring forward
        self.max_seq_len = max_seq_len
        self.progress = progress
        self.tokens_computed = 0  # real (non-pad) tokens through the transformer body
        self.head_positions = 0  # positions through the LM head

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=add_special_tokens).input_ids)

    def score_groups(
        self, groups: Sequence[Sequence[ScoreRequest]], desc: str = "score"
    ) -> list[list[ScoreResult]]:
        """Sum of log-probs of tokens[score_from:] for every request. Each group (the candidates of one
        question) is packed into one row with its shared prefix computed once; rows are batched by a token
        budget, longest first. Results do not depend on how rows are batched."""
        import torch

        packed = [pack_group([truncate(r, self.max_seq_len) for r in g]) for g in groups]
        results: list[list[ScoreResult]] = [[] for _ in packed]
        bar = tqdm(total=sum(len(g) for g in groups), desc=desc, unit="cand", disable=not self.progress)
        with torch.inference_mode():
            for batch in budget_batches([len(g.tokens) for g in packed], self.token_budget):
                flat = self._score_batch([packed[i] for i in batch])
                for i in batch:
                    n = packed[i].n_candidates
                    results[i], flat = flat[:n], flat[n:]
                    bar.update(n)
        bar.close()
        return results

    def _score_batch(self, groups: Sequence[PackedGroup]) -> list[ScoreResult]:
        import torch

        device = self.device
        c = collate(groups, self.tokenizer.pad_token_id)
        self.tokens_computed += c.real_tokens
        self.head_positions += len(c.entry_target)
        hidden = self.model.get_decoder()(
            input_ids=c.ids.to(device), attention_mask=c.mask.to(device), position_ids=c.positions.to(device)
        ).last_hidden_state
        logprobs, greedy = self._head(
            hidden[c.entry_row.to(device), c.entry_col.to(device)], c.entry_target.to(device)
        )
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

    def _head(self, hidden: Any, targets: Any, chunk: int = 512) -> tuple[Any, Any]:
        """Log-prob of each target and whether it is the argmax, through the LM head in chunks of positions
        so the (positions x vocab) logits never exist all at once."""
        import torch

        head = self.model.get_output_embeddings()
        logprobs, greedy = [], []
        for start in range(0, hidden.shape[0], chunk):
            logits = head(hidden[start : start + chunk]).float()
            target = targets[start : start + chunk]
            picked = logits.gather(1, target[:, None]).squeeze(1)
            logprobs.append(picked - torch.logsumexp(logits, dim=-1))
            greedy.append(logits.argmax(dim=-1) == target)
        return torch.cat(logprobs), torch.cat(greedy)

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int,
        stop: Sequence[str],
        chat: bool,
        desc: str = "generate",
    ) -> list[Generation]:
        """Greedy generation in length-sorted, left-padded batches; text is cut at the first stop string."""
        import torch

        tok = self.tokenizer
        if chat:
            prompts = [
                tok.apply_chat_template(
                    [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False
                )
                for p in prompts
            ]
        encoded = [self.encode(p, add_special_tokens=not chat) for p in prompts]
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        results: list[Generation | None] = [None] * len(encoded)
        bar = tqdm(total=len(encoded), desc=desc, unit="row", disable=not self.progress)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                for i, g in zip(
                    chunk,
                    self._generate_batch([encoded[i] for i in chunk], max_new_tokens, stop),
                    strict=True,
                ):
                    results[i] = g
                bar.update(len(chunk))
        bar.close()
        return [g for g in results if g is not None]

    def _generate_batch(
        self, batch: Sequence[list[int]], max_new_tokens: int, stop: Sequence[str]
    ) -> list[Generation]:
        import torch

        tok = self.tokenizer
        width = max(len(x) for x in batch)
        ids = torch.full((len(batch), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for j, x in enumerate(batch):
            ids[j, width - len(x) :] = torch.tensor(x)
            mask[j, width - len(x) :] = 1
        kwargs: dict[str, Any] = {}
        if stop:
            kwargs.update(stop_strings=list(stop), tokenizer=tok)
        out = self.model.generate(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            **kwargs,
        )
        new = out[:, width:].cpu()
        generations = []
        for j, x in enumerate(batch):
            row = new[j].tolist()
            n_new = next((k + 1 for k, t in enumerate(row) if t == tok.eos_token_id), len(row))
            text = cut_at_stop(tok.decode(row[:n_new], skip_special_tokens=True), stop)
            self.tokens_computed += len(x) + n_new
            generations.append(Generation(text=text, n_prompt_tokens=len(x), n_new_tokens=n_new))
        return generations
