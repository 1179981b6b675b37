"""Stop strings in streamed text: emit what is safe, hold back what might be the start of a stop string."""

from __future__ import annotations

from collections.abc import Sequence


class StopMatcher:
    """Feed text pieces; get back the text that can be shown now and whether a stop string was reached.

    Text that could still turn into a stop string (a suffix equal to a prefix of one) is held back until
    the next piece decides it; ``flush`` releases it at the end.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self._held = ""
        #: the stop string that ended generation, if any
        self.matched: str | None = None

    def feed(self, piece: str) -> tuple[str, bool]:
        """``(text to emit, stopped)``; after a stop, text from the stop string on is dropped."""
        if self.matched is not None:
            return "", True
        text = self._held + piece
        if not self.stops:
            self._held = ""
            return text, False
        first = None
        for stop in self.stops:
            at = text.find(stop)
            if at >= 0 and (first is None or at < first[0]):
                first = (at, stop)
        if first is not None:
            self.matched = first[1]
            self._held = ""
            return text[: first[0]], True
        keep = self._partial_suffix(text)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep], False

    def flush(self) -> str:
        """The held-back text (call when generation ends for another reason)."""
        out, self._held = self._held, ""
        return out if self.matched is None else ""

    def _partial_suffix(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
        best = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:n]):
                    best = n
                    break
        return best
