"""``emberllm run``: generate text from a prompt (or chat with ``-cnv``), streaming to stdout, timings to stderr."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from emberllm.cli.common import USER_ERRORS, add_model_flags, fail, load_model
from emberllm.cli.sampling_flags import add_sampling_flags, params_from_args, print_chain

#: ``-n`` in conversation mode when none is given: a reply of a base model (no end-of-turn token) stops here.
CONVERSATION_N_PREDICT = 256


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``run``."""
    p = sub.add_parser("run", help="generate text from a prompt, or chat with -cnv")
    add_model_flags(p)
    p.add_argument("-p", "--prompt", default=None, help="prompt text")
    p.add_argument("-f", "--file", default=None, help="read the prompt from a file")
    p.add_argument("-n", "--n-predict", type=int, default=None,
                   help=f"tokens to generate, -1 = until the end of text (default: -1; with -cnv "
                        f"{CONVERSATION_N_PREDICT} per reply, since a base model's reply may never end)")
    p.add_argument("--keep", type=int, default=0, help="prompt tokens kept when the context shifts (-1 = all)")
    p.add_argument("--no-context-shift", action="store_true", help="stop when the context is full")
    p.add_argument("-r", "--reverse-prompt", action="append", default=[], metavar="TEXT",
                   help="stop (or, with -cnv, hand over to the user) at TEXT; repeatable")
    p.add_argument("-cnv", "--conversation", action="store_true", help="chat in the terminal with the chat template")
    p.add_argument("-sys", "--system-prompt", default=None, help="system prompt for -cnv")
    p.add_argument("--chat-template", default=None, help="chat template: a built-in name or Jinja text")
    p.add_argument("--no-display-prompt", action="store_true", help="do not echo the prompt")
    p.add_argument("--verbose-prompt", action="store_true", help="print the prompt's tokens")
    add_sampling_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load, then generate once or chat."""
    try:
        params = params_from_args(args)
        prompt = args.prompt
        if args.file is not None:
            with open(args.file, encoding="utf-8") as f:
                prompt = f.read()
        if prompt is None and not args.conversation:
            raise ValueError("give a prompt with -p TEXT or -f FILE (or chat with -cnv)")
        if args.n_predict is None:
            args.n_predict = CONVERSATION_N_PREDICT if args.conversation else -1
        model = load_model(args)
        if args.chat_template:
            model._chat_template_override = args.chat_template  # noqa: SLF001 - set before first use
            _ = model.chat_template
    except USER_ERRORS as exc:
        return fail(str(exc))
    try:
        seed = params.seed if params.seed is not None else model.sampler(params).seed
        params.seed = seed
        print_chain(params, seed, model.n_ctx, model.n_batch, args.n_predict, args.keep)
        if args.conversation:
            return converse(model, args, params, prompt)
        return complete_once(model, args, params, prompt)
    except USER_ERRORS as exc:
        return fail(str(exc))
    finally:
        model.close()


def complete_once(model: Any, args: argparse.Namespace, params: Any, prompt: str) -> int:
    """Plain completion of one prompt."""
    if args.verbose_prompt:
        ids = model.tokenize(prompt)
        print(f"prompt: {len(ids)} tokens: {ids}", file=sys.stderr)
    if not args.no_display_prompt:
        sys.stdout.write(prompt)
        sys.stdout.flush()
    stopper = _Interrupt()
    with stopper:
        for step in model.generate(prompt, n_predict=args.n_predict, params=params, stop=args.reverse_prompt,
                                   n_keep=args.keep, context_shift=not args.no_context_shift, cancel=stopper.is_set):
            sys.stdout.write(step.text)
            sys.stdout.flush()
    sys.stdout.write("\n")
    print_timings(model)
    return 0


def converse(model: Any, args: argparse.Namespace, params: Any, first: str | None) -> int:
    """Conversation mode: the chat template over the history; ``/exit`` or end of input quits; Ctrl+C stops a
    reply and returns to the prompt."""
    messages: list[dict[str, str]] = []
    if args.system_prompt:
        messages.append({"role": "system", "content": args.system_prompt})
    limit = f"replies stop after {args.n_predict} tokens (-n)" if args.n_predict >= 0 else "replies are not capped"
    print(f"== conversation mode: type /exit or press Ctrl+D to quit; Ctrl+C stops a reply; {limit} ==",
          file=sys.stderr)
    pending = first
    while True:
        if pending is None:
            try:
                pending = input("\n> ")
            except EOFError:
                print(file=sys.stderr)
                return 0
            except KeyboardInterrupt:
                print(file=sys.stderr)
                return 0
        text, pending = pending, None
        if text.strip() in ("/exit", "/quit"):
            return 0
        if not text.strip():
            continue
        messages.append({"role": "user", "content": text})
        reply = []
        stopper = _Interrupt()
        with stopper:
            for step in model.chat(messages, n_predict=args.n_predict, params=params, stop=args.reverse_prompt,
                                   n_keep=args.keep, context_shift=not args.no_context_shift, cancel=stopper.is_set):
                reply.append(step.text)
                sys.stdout.write(step.text)
                sys.stdout.flush()
        sys.stdout.write("\n")
        sys.stdout.flush()
        messages.append({"role": "assistant", "content": "".join(reply)})


class _Interrupt:
    """While active, Ctrl+C sets a flag (the generation loop polls it) instead of raising."""

    def __init__(self) -> None:
        self._set = False
        self._old: Any = None

    def is_set(self) -> bool:
        """Whether Ctrl+C was pressed."""
        return self._set

    def _handler(self, _signum: int, _frame: Any) -> None:
        self._set = True

    def __enter__(self) -> _Interrupt:
        try:
            self._old = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def print_timings(model: Any) -> None:
    """llama.cpp-style performance lines on stderr."""
    tm = model.timings
    err = sys.stderr

    def line(label: str, ms: float, n: int, unit: str) -> None:
        per = ms / n if n else 0.0
        tps = tm.per_second(ms, n)
        print(f"{label} = {ms:10.2f} ms / {n:5d} {unit} ({per:8.2f} ms per token, {tps:8.2f} tokens per second)",
              file=err)

    print(f"\nemberllm_perf:        load time = {tm.load_ms:10.2f} ms", file=err)
    line("emberllm_perf: prompt eval time", tm.prompt_ms, tm.prompt_tokens, "tokens")
    line("emberllm_perf:        eval time", tm.eval_ms, tm.eval_tokens, "runs  ")
    print(f"emberllm_perf:      sample time = {tm.sample_ms:10.2f} ms", file=err)
    if tm.cached_tokens:
        print(f"emberllm_perf: prompt tokens reused from cache = {tm.cached_tokens}", file=err)
    if tm.eval_tokens:
        print(f"emberllm_perf: kernel calls per token = {tm.kernel_calls / tm.eval_tokens:.0f}", file=err)
