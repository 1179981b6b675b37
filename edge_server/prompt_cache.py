"""The host-RAM prompt cache (llama-server's ``--cache-ram``): KV rows of prompts a slot is about to lose.

A slot holds one sequence's KV rows; when a request takes a slot whose cached tokens it mostly does not share, the
slot's rows are copied here first, and the request's prompt is restored from here when an earlier copy shares more
of it than the slot does.  So with few slots (one, on a small box) several conversations take turns without
evaluating their whole history again.  With ``cache_idle_slots`` the idle slots are copied here whenever a task
starts (and with ``--kv-unified`` cleared, giving their room in the shared pool back).  Entries are kept least
recently used first out, within ``limit_bytes``; slots whose layers live on a GPU are not cached.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from emberllm.backends.kv_cache import KVCache
from emberllm.runtime.decoding import common_prefix

#: A prompt and the logits of its last token (what a slot keeps to answer the same prompt again without evaluating).
PromptLogits = tuple[list[int], memoryview]


@dataclass
class CachedPrompt:
    """One copied sequence: its tokens and each layer's K and V rows."""

    tokens: list[int]
    rows: list[bytes]
    #: the slot's last evaluated prompt (a prefix of ``tokens``) and its last token's logits, when it had them
    logits: PromptLogits | None = None
    last_used: float = field(default_factory=time.monotonic)

    @property
    def nbytes(self) -> int:
        """Bytes held (the rows and the logits, a whole vocabulary's row)."""
        return sum(len(r) for r in self.rows) + (self.logits[1].nbytes if self.logits is not None else 0)


class PromptCache:
    """Copies of slots' KV rows in host memory (see the module doc)."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.entries: list[CachedPrompt] = []

    @property
    def nbytes(self) -> int:
        """Bytes held by all entries."""
        return sum(e.nbytes for e in self.entries)

    def save(self, kv: KVCache, logits: PromptLogits | None = None) -> bool:
        """Copy ``kv``'s rows in, with ``logits`` when their prompt is a prefix of its tokens (False when it is empty,
        already here, on a device or larger than the limit); entries it extends are replaced, the least recently
        used go when over the limit."""
        tokens = list(kv.tokens)
        if not tokens or any(e.tokens[:len(tokens)] == tokens for e in self.entries):
            return False
        rows = kv.export_rows(len(tokens))
        if rows is None:
            return False
        kept = logits if logits is not None and tokens[:len(logits[0])] == logits[0] else None
        entry = CachedPrompt(tokens, rows, kept)
        if entry.nbytes > self.limit_bytes:
            return False
        self.entries = [e for e in self.entries if e.tokens != tokens[:len(e.tokens)]]
        self.entries.append(entry)
        while self.nbytes > self.limit_bytes:
            self.entries.remove(min(self.entries, key=lambda e: e.last_used))
        return True

    def load(self, kv: KVCache, prompt: list[int]) -> tuple[int, PromptLogits | None]:
        """Restore into ``kv`` the entry sharing the longest prefix with ``prompt`` when it shares more than ``kv``
        does: the restored prefix length (0: nothing restored) and, when the entry holds the logits of exactly
        ``prompt``, those (then the whole prompt is restored, nothing is left to evaluate)."""
        have = common_prefix(kv.tokens, prompt)
        best, best_n = None, have
        for entry in self.entries:
            n = common_prefix(entry.tokens, prompt)
            if n > best_n:
                best, best_n = entry, n
        if best is None:
            return 0, None
        whole = best.logits is not None and best.logits[0] == list(prompt)
        n = len(prompt) if whole else best_n
        if not kv.import_rows(best.rows, best.tokens[:n]):
            return 0, None
        best.last_used = time.monotonic()
        return n, best.logits if whole else None
