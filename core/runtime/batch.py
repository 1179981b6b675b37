"""One forward pass over a batch of sequences, and the logits it leaves (llama.cpp's ``llama_decode`` and
``llama_get_logits_ith``).

``decode_batch`` appends each entry's tokens to its sequence (a ``KVCache``) and returns ``LogitRows``: the logits
of the rows the entries asked for, read *after* the call.  A single sequence may bring any number of tokens (they
run in micro-batches of ``n_batch``); several sequences must fit in one micro-batch together.  When every entry
brings one token (a decode step), every matrix product stays on the row-by-row kernels, so each sequence gets
exactly the logits it would get decoded alone, whatever else is in the batch.  ``decode_hidden`` runs the same pass
and stops at the final norm: ``HiddenRows``, the asked rows' hidden states (llama.cpp's embeddings), never projected.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from emberllm.backends.binding import Buffer
from emberllm.backends.kv_cache import KVCache
from emberllm.models.decoder import LOGIT_GROUP, ContextFullError, Decoder


class BatchEntry(NamedTuple):
    """Tokens to append to one sequence; ``logits`` lists the token indices whose logits are wanted (``None``:
    the last one)."""

    sequence: KVCache
    tokens: Sequence[int]
    logits: Iterable[int] | None = None


class LogitRows:
    """The logits of the rows one decode asked for, in batch order (entry by entry, rows ascending).

    ``rows[i]`` is a float32 memoryview of ``n_vocab`` values and ``rows.handle(i)`` the same row for the kernels.
    Everything is valid until the model's next decode; reading afterwards raises ``RuntimeError``.  Rows are
    projected in groups of up to ``LOGIT_GROUP`` (never across micro-batches), the first group during the decode,
    later ones when first read: a view of one group is overwritten when a row of another group is read (read many
    rows in order, as perplexity does).
    """

    def __init__(self, decoder: Decoder, hidden: Buffer, groups: list[tuple[int, int]], epoch: list[int],
                 row_by_row: bool = False) -> None:
        self._decoder = decoder
        self._row_by_row = row_by_row
        self._hidden = hidden
        self._groups = groups
        self._group_of = [g for g, (_first, n) in enumerate(groups) for _ in range(n)]
        self._n = len(self._group_of)
        self._epoch_ref = epoch
        self._epoch = epoch[0]
        self._group = -1
        self._n_vocab = decoder.hp.n_vocab
        if groups:
            self._project(0)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> memoryview:
        return self._decoder.logits_row(self._local(i))

    def handle(self, i: int) -> Any:
        """Row ``i`` as a host kernel pointer, for the sampler."""
        return self._decoder.logits_handle(self._local(i))

    def sync(self) -> None:
        """Wait until the device has computed these logits (nothing to wait for on the CPU)."""
        self._decoder.sync()

    def argmax(self, i: int) -> int:
        """The most likely token of row ``i`` (found on the device when the logits live there)."""
        return self._decoder.logits_argmax(self._local(i))

    def log_prob(self, i: int, token: int) -> float:
        """``log softmax(row i)[token]``, computed in double precision by the host kernels."""
        return self._decoder.host_ops.log_softmax_at(self.handle(i), self._n_vocab, token)

    def _local(self, i: int) -> int:
        if self._epoch != self._epoch_ref[0]:
            raise RuntimeError("these logits were overwritten by a later decode")
        if not -self._n <= i < self._n:
            raise IndexError(f"logit row {i} out of range ({self._n} rows)")
        i %= self._n
        group = self._group_of[i]
        if group != self._group:
            self._project(group)
        return i - self._groups[group][0]

    def _project(self, group: int) -> None:
        first, n = self._groups[group]
        with self._decoder.ops.row_by_row(n, enabled=self._row_by_row):
            self._decoder.project(self._hidden, first, n)
        self._group = group


class HiddenRows:
    """The final-norm hidden states of the rows one decode asked for, in batch order (llama.cpp's embeddings,
    ``t_embd``: the output norm's result before the output projection).

    ``rows[i]`` is a float32 memoryview of ``n_embd`` values, valid until the model's next decode (reading
    afterwards raises ``RuntimeError``); on a device the rows are read back together on first access.
    """

    def __init__(self, decoder: Decoder, hidden: Buffer, n: int, epoch: list[int]) -> None:
        self._decoder = decoder
        self._hidden = hidden
        self._n = n
        self._epoch_ref = epoch
        self._epoch = epoch[0]
        self._dim = decoder.hp.n_embd
        self._host: memoryview | None = None

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> memoryview:
        if self._epoch != self._epoch_ref[0]:
            raise RuntimeError("these hidden states were overwritten by a later decode")
        if not -self._n <= i < self._n:
            raise IndexError(f"hidden row {i} out of range ({self._n} rows)")
        if self._host is None:
            self._host = self._decoder.ops.read(self._hidden, self._n * self._dim)
        i %= self._n
        return self._host[i * self._dim : (i + 1) * self._dim]


class BatchRunner:
    """Runs ``decode_batch`` for one decoder: validation, micro-batches, the kept output rows."""

    def __init__(self, decoder: Decoder) -> None:
        self.decoder = decoder
        self._hidden = decoder.ops.f32(LOGIT_GROUP * decoder.hp.n_embd)
        self._hidden_rows = LOGIT_GROUP
        self._epoch = [0]

    def decode_batch(self, batch: Sequence[BatchEntry | tuple[Any, ...]]) -> LogitRows:
        """Append every entry's tokens to its sequence; the logits of the asked rows (see the module doc)."""
        entries, groups = self._run(batch)
        # a step of several sequences keeps its logits on the row-by-row kernels too (see the module doc)
        step = len(entries) > 1 and all(len(e.tokens) == 1 for e in entries)
        return LogitRows(self.decoder, self._hidden, groups, self._epoch, row_by_row=step)

    def decode_hidden(self, batch: Sequence[BatchEntry | tuple[Any, ...]]) -> HiddenRows:
        """``decode_batch`` that stops at the final norm: the asked rows' hidden states, never projected."""
        _entries, groups = self._run(batch)
        return HiddenRows(self.decoder, self._hidden, sum(n for _first, n in groups), self._epoch)

    def _run(self, batch: Sequence[BatchEntry | tuple[Any, ...]]) -> tuple[list[BatchEntry], list[tuple[int, int]]]:
        """The forward pass of ``batch`` with the asked rows through the final norm into ``_hidden``."""
        entries = [BatchEntry(*e) for e in batch]
        if not entries:
            raise ValueError("empty batch")
        wanted = [self._check(e) for e in entries]
        self._epoch[0] += 1
        self._reserve(sum(len(w) for w in wanted))
        if len(entries) == 1:
            return entries, self._decode_one(entries[0], wanted[0])
        return entries, self._decode_many(entries, wanted)

    def _check(self, e: BatchEntry) -> list[int]:
        tokens, kv, n_vocab = e.tokens, e.sequence, self.decoder.hp.n_vocab
        if not tokens:
            raise ValueError("no tokens to decode")
        if kv.n_past + len(tokens) > kv.n_ctx:
            raise ContextFullError(f"{kv.n_past + len(tokens)} tokens do not fit in the context of {kv.n_ctx}")
        bad = [t for t in tokens if not 0 <= t < n_vocab]
        if bad:
            raise ValueError(f"token id {bad[0]} outside the vocabulary (0..{n_vocab - 1})")
        rows = [len(tokens) - 1] if e.logits is None else sorted(set(e.logits))
        if rows and not 0 <= rows[0] <= rows[-1] < len(tokens):
            raise IndexError(f"logit rows {rows[0]}..{rows[-1]} outside the {len(tokens)} tokens")
        return rows

    def _reserve(self, n_rows: int) -> None:
        if n_rows > self._hidden_rows:
            self._hidden_rows = max(n_rows, 2 * self._hidden_rows)
            self._hidden = self.decoder.ops.f32(self._hidden_rows * self.decoder.hp.n_embd)

    def _decode_one(self, e: BatchEntry, rows: list[int]) -> list[tuple[int, int]]:
        dec, tokens, n_batch = self.decoder, list(e.tokens), self.decoder.n_batch
        out, groups = 0, []
        for start in range(0, len(tokens), n_batch):
            chunk = tokens[start : start + n_batch]
            segments = dec.load_rows([(e.sequence, chunk)])
            dec.forward(len(chunk), segments)
            e.sequence.tokens.extend(chunk)
            first = out
            for r in rows:
                if start <= r < start + len(chunk):
                    dec.final_norm(r - start, self._hidden, out)
                    out += 1
            groups += _groups(first, out - first)
        return groups

    def _decode_many(self, entries: list[BatchEntry], wanted: list[list[int]]) -> list[tuple[int, int]]:
        dec = self.decoder
        total = sum(len(e.tokens) for e in entries)
        if total > dec.n_batch:
            raise ValueError(f"{total} tokens exceed the micro-batch of {dec.n_batch}")
        segments = dec.load_rows([(e.sequence, list(e.tokens)) for e in entries])
        step = total == len(entries)  # a decode step: keep every product on the row-by-row kernels
        with dec.ops.row_by_row(total, enabled=step):
            dec.forward(total, segments)
        out = 0
        for e, seg, rows in zip(entries, segments, wanted, strict=True):
            e.sequence.tokens.extend(e.tokens)
            for r in rows:
                dec.final_norm(seg.start + r, self._hidden, out)
                out += 1
        return _groups(0, out)


def _groups(first: int, n: int) -> list[tuple[int, int]]:
    """Rows ``first .. first + n`` cut into projection groups of at most ``LOGIT_GROUP``."""
    return [(g, min(LOGIT_GROUP, first + n - g)) for g in range(first, first + n, LOGIT_GROUP)]
