"""llama.cpp's sampling flags (grammar and JSON schema ones included), shared by ``run`` (and later ``serve``),
and the chain summary it prints."""

from __future__ import annotations

import argparse
import json
import sys

from emberllm.sampling import SamplingParams

_D = SamplingParams()


def add_sampling_flags(p: argparse.ArgumentParser) -> None:
    """Register every sampling flag with llama.cpp's name and default."""
    g = p.add_argument_group("sampling (llama.cpp names and defaults)")
    g.add_argument("--temp", type=float, default=_D.temperature, help=f"temperature; 0 = greedy ({_D.temperature})")
    g.add_argument("--top-k", type=int, default=_D.top_k, help=f"top-k, 0 = off ({_D.top_k})")
    g.add_argument("--top-p", type=float, default=_D.top_p, help=f"top-p, 1.0 = off ({_D.top_p})")
    g.add_argument("--min-p", type=float, default=_D.min_p, help=f"min-p, 0.0 = off ({_D.min_p})")
    g.add_argument("--typical", type=float, default=_D.typical_p, help=f"locally typical p, 1.0 = off ({_D.typical_p})")
    g.add_argument("--top-nsigma", type=float, default=_D.top_n_sigma, help="top-n-sigma, -1 = off")
    g.add_argument("--repeat-penalty", type=float, default=_D.repeat_penalty, help="repetition penalty, 1.0 = off")
    g.add_argument("--repeat-last-n", type=int, default=_D.repeat_last_n,
                   help=f"tokens the penalties look at, -1 = context ({_D.repeat_last_n})")
    g.add_argument("--presence-penalty", type=float, default=_D.presence_penalty, help="presence penalty, 0 = off")
    g.add_argument("--frequency-penalty", type=float, default=_D.frequency_penalty, help="frequency penalty, 0 = off")
    g.add_argument("--dry-multiplier", type=float, default=_D.dry_multiplier, help="DRY multiplier, 0 = off")
    g.add_argument("--dry-base", type=float, default=_D.dry_base, help=f"DRY base ({_D.dry_base})")
    g.add_argument("--dry-allowed-length", type=int, default=_D.dry_allowed_length, help="DRY allowed length (2)")
    g.add_argument("--dry-penalty-last-n", type=int, default=_D.dry_penalty_last_n,
                   help="DRY look-back, -1 = context, 0 = off")
    g.add_argument("--dry-sequence-breaker", action="append", default=None, metavar="STRING",
                   help="DRY sequence breaker (repeatable; 'none' clears the defaults)")
    g.add_argument("--xtc-probability", type=float, default=_D.xtc_probability, help="XTC probability, 0 = off")
    g.add_argument("--xtc-threshold", type=float, default=_D.xtc_threshold, help=f"XTC threshold ({_D.xtc_threshold})")
    g.add_argument("--dynatemp-range", type=float, default=_D.dynatemp_range, help="dynamic temperature range")
    g.add_argument("--dynatemp-exp", type=float, default=_D.dynatemp_exponent, help="dynamic temperature exponent")
    g.add_argument("--mirostat", type=int, default=_D.mirostat, choices=[0, 1, 2], help="Mirostat 0 = off, 1, 2")
    g.add_argument("--mirostat-lr", type=float, default=_D.mirostat_eta, help="Mirostat learning rate (eta)")
    g.add_argument("--mirostat-ent", type=float, default=_D.mirostat_tau, help="Mirostat target entropy (tau)")
    g.add_argument("--min-keep", type=int, default=_D.min_keep, help="minimum candidates kept by truncation")
    g.add_argument("--samplers", default=None,
                   help="sampler order: names separated by ';' or llama.cpp letters such as 'edkypmxt'")
    g.add_argument("--sampling-seq", "--sampler-seq", dest="sampling_seq", default=None,
                   help="sampler order as letters")
    g.add_argument("-s", "--seed", type=int, default=-1, help="random seed, -1 = random")
    g.add_argument("--ignore-eos", action="store_true", help="keep generating after end-of-generation tokens")
    g.add_argument("-l", "--logit-bias", action="append", default=[], metavar="TOKEN_ID(+/-)BIAS",
                   help="e.g. '15043+1' or '15043-inf'")
    c = g.add_mutually_exclusive_group()
    c.add_argument("--grammar", default=None, metavar="GRAMMAR", help="GBNF grammar to constrain generations")
    c.add_argument("--grammar-file", default=None, metavar="FNAME", help="file to read the GBNF grammar from")
    c.add_argument("-j", "--json-schema", default=None, metavar="SCHEMA",
                   help="JSON schema to constrain generations, e.g. '{\"type\": \"object\"}' for any JSON object")
    c.add_argument("-jf", "--json-schema-file", default=None, metavar="FILE",
                   help="file containing a JSON schema to constrain generations")


def grammar_from_args(args: argparse.Namespace) -> str:
    """The GBNF text of ``--grammar``/``--grammar-file``/``-j``/``-jf`` (empty: none); ``ValueError`` naming the
    flag for an unreadable file, malformed JSON, a schema keyword the grammar cannot express or bad GBNF."""
    from emberllm.grammar import GrammarError, parse
    from emberllm.grammar.json_schema import requested_schema_gbnf

    text, flag = args.grammar, "--grammar"
    if args.grammar_file is not None:
        text, flag = _read(args.grammar_file, "--grammar-file"), "--grammar-file"
    schema_text, schema_flag = args.json_schema, "--json-schema"
    if args.json_schema_file is not None:
        schema_text = _read(args.json_schema_file, "--json-schema-file")
        schema_flag = "--json-schema-file"
    if schema_text is not None:
        try:
            schema = json.loads(schema_text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{schema_flag}: invalid JSON: {exc}") from exc
        if not isinstance(schema, dict):
            raise ValueError(f"{schema_flag}: expected a JSON schema object, got {type(schema).__name__}")
        try:
            return requested_schema_gbnf(schema)
        except (ValueError, TypeError, RecursionError) as exc:
            raise ValueError(f"{schema_flag}: {exc}") from exc
    if not text:
        return ""
    try:
        parse(text)
    except GrammarError as exc:
        raise ValueError(f"{flag}: {exc}") from exc
    return text


def _read(path: str, flag: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{flag}: cannot read {path}: {exc}") from exc


def _parse_logit_bias(items: list[str]) -> dict[int, float]:
    out: dict[int, float] = {}
    for item in items:
        for sign in ("+", "-"):
            head, sep, tail = item.partition(sign)
            if sep and head.strip().isdigit():
                try:
                    out[int(head)] = float(sign + tail)
                except ValueError as exc:
                    raise ValueError(f"--logit-bias: bad bias in {item!r}") from exc
                break
        else:
            raise ValueError(f"--logit-bias: expected TOKEN_ID+BIAS or TOKEN_ID-BIAS, got {item!r}")
    return out


def params_from_args(args: argparse.Namespace) -> SamplingParams:
    """The ``SamplingParams`` the flags describe (``ValueError`` naming the flag when a value is invalid)."""
    samplers: list[str] | str = list(_D.samplers)
    if args.samplers:
        samplers = [s for s in args.samplers.replace(",", ";").split(";") if s]
    if args.sampling_seq:
        samplers = args.sampling_seq
    breakers = list(_D.dry_sequence_breakers)
    if args.dry_sequence_breaker is not None:
        breakers = [] if args.dry_sequence_breaker == ["none"] else args.dry_sequence_breaker
    return SamplingParams(
        temperature=args.temp, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p, typical_p=args.typical,
        top_n_sigma=args.top_nsigma, repeat_penalty=args.repeat_penalty, repeat_last_n=args.repeat_last_n,
        presence_penalty=args.presence_penalty, frequency_penalty=args.frequency_penalty,
        dry_multiplier=args.dry_multiplier, dry_base=args.dry_base, dry_allowed_length=args.dry_allowed_length,
        dry_penalty_last_n=args.dry_penalty_last_n, dry_sequence_breakers=breakers,
        xtc_probability=args.xtc_probability, xtc_threshold=args.xtc_threshold,
        dynatemp_range=args.dynatemp_range, dynatemp_exponent=args.dynatemp_exp, mirostat=args.mirostat,
        mirostat_eta=args.mirostat_lr, mirostat_tau=args.mirostat_ent, min_keep=args.min_keep,
        seed=None if args.seed < 0 else args.seed, ignore_eos=args.ignore_eos,
        logit_bias=_parse_logit_bias(args.logit_bias), samplers=samplers, grammar=grammar_from_args(args),
    )


def print_chain(params: SamplingParams, seed: int, n_ctx: int, n_batch: int, n_predict: int, n_keep: int) -> None:
    """llama.cpp's start-up summary of the sampler settings and chain, on stderr."""
    p = params
    err = sys.stderr
    print(f"sampler seed: {seed}", file=err)
    print("sampler params:", file=err)
    print(f"\trepeat_last_n = {p.repeat_last_n}, repeat_penalty = {p.repeat_penalty:.3f}, "
          f"frequency_penalty = {p.frequency_penalty:.3f}, presence_penalty = {p.presence_penalty:.3f}", file=err)
    print(f"\tdry_multiplier = {p.dry_multiplier:.3f}, dry_base = {p.dry_base:.3f}, "
          f"dry_allowed_length = {p.dry_allowed_length}, dry_penalty_last_n = {p.dry_penalty_last_n}", file=err)
    print(f"\ttop_k = {p.top_k}, top_p = {p.top_p:.3f}, min_p = {p.min_p:.3f}, "
          f"xtc_probability = {p.xtc_probability:.3f}, xtc_threshold = {p.xtc_threshold:.3f}, "
          f"typical_p = {p.typical_p:.3f}, top_n_sigma = {p.top_n_sigma:.3f}, temp = {p.temperature:.3f}", file=err)
    print(f"\tmirostat = {p.mirostat}, mirostat_lr = {p.mirostat_eta:.3f}, mirostat_ent = {p.mirostat_tau:.3f}",
          file=err)
    if p.temperature <= 0:
        chain = ["logits", "greedy"]
    elif p.mirostat:
        chain = ["logits", "logit-bias", "temp", f"mirostat-v{p.mirostat}"]
    else:
        chain = ["logits", "logit-bias", *[s.replace("_", "-") for s in p.samplers], "dist"]
    print("sampler chain: " + " -> ".join(chain), file=err)
    print(f"generate: n_ctx = {n_ctx}, n_batch = {n_batch}, n_predict = {n_predict}, n_keep = {n_keep}", file=err)
