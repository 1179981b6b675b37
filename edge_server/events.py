"""What the engine thread hands to a request's handler: a step, the end of the generation, or an error.

The scheduler posts ``StepEvent``s (one per sampled token, and one last step when a generation is cancelled),
the worker a ``DoneEvent`` once the generation has ended normally; an ``ErrorEvent`` ends a generation that
failed (or never started).  Consumers ``match`` on the class.
"""

from __future__ import annotations

from dataclasses import dataclass

from emberllm.runtime.decoding import Step, Timings

__all__ = ["DoneEvent", "ErrorEvent", "Event", "GenResult", "ProgressEvent", "StepEvent"]


@dataclass
class GenResult:
    """What is known once a generation has ended."""

    n_prompt: int
    timings: Timings
    id_slot: int = 0
    #: the context was shifted while generating (llama-server's ``truncated``)
    shifted: bool = False


@dataclass(frozen=True, slots=True)
class StepEvent:
    """One step of the generation (a token and its text, or its last step with a finish reason)."""

    step: Step


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """The prompt's evaluation so far (llama-server's ``prompt_progress``, sent when a request sets
    ``return_progress``): ``processed`` of ``total`` prompt tokens are in the cache, ``cache`` of them were already;
    ``prompt_ms`` spent on it."""

    total: int
    cache: int
    processed: int
    prompt_ms: float


@dataclass(frozen=True, slots=True)
class DoneEvent:
    """The generation has ended; no event follows."""

    result: GenResult


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """The generation failed (or could not start); no event follows."""

    error: BaseException


#: Every event a ``Job`` delivers.
Event = StepEvent | ProgressEvent | DoneEvent | ErrorEvent
