"""``emberllm run``: generate text from a prompt, streaming to stdout, timings to stderr."""

from __future__ import annotations

import argparse
import sys

from emberllm.cli.common import USER_ERRORS, add_model_flags, fail, load_model


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``run``."""
    p = sub.add_parser("run", help="generate text from a prompt")
    add_model_flags(p)
    p.add_argument("-p", "--prompt", default=None, help="prompt text")
    p.add_argument("-f", "--file", default=None, help="read the prompt from a file")
    p.add_argument("-n", "--n-predict", type=int, default=128, help="tokens to generate (default: 128)")
    p.add_argument("--temp", type=float, default=0.8, help="temperature; 0 = greedy (default: 0.8)")
    p.add_argument("-s", "--seed", type=int, default=None, help="random seed")
    p.add_argument("--ignore-eos", action="store_true", help="keep generating after end-of-generation tokens")
    p.add_argument("--no-display-prompt", action="store_true", help="do not echo the prompt")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load, generate, print."""
    try:
        if args.prompt is None and args.file is None:
            raise ValueError("give a prompt with -p TEXT or -f FILE")
        prompt = args.prompt if args.prompt is not None else open(args.file, encoding="utf-8").read()
        if args.n_predict < 0:
            raise ValueError("-n/--n-predict must be >= 0")
        model = load_model(args)
    except USER_ERRORS as exc:
        return fail(str(exc))
    try:
        if not args.no_display_prompt:
            sys.stdout.write(prompt)
            sys.stdout.flush()
        for step in model.generate(prompt, n_predict=args.n_predict, temperature=args.temp, seed=args.seed,
                                   ignore_eos=args.ignore_eos):
            sys.stdout.write(step.text)
            sys.stdout.flush()
        sys.stdout.write("\n")
        print_timings(model)
    except USER_ERRORS as exc:
        return fail(str(exc))
    finally:
        model.close()
    return 0


def print_timings(model: object) -> None:
    """llama.cpp-style performance lines on stderr."""
    tm = model.timings  # type: ignore[attr-defined]
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
    if tm.eval_tokens:
        print(f"emberllm_perf: kernel calls per token = {tm.kernel_calls / tm.eval_tokens:.0f}", file=err)
