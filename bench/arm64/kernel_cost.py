"""Decode cost per token of the aarch64 kernel levels under qemu-aarch64: guest instructions and emulated time.

For information only (not in CI): qemu's time says nothing about a real Pi, but the number of aarch64 instructions a
token takes is a fair proxy of the work each level does.  At one emulated core (the Pi 5's cortex-a76, which runs
every level) and one thread, each level (scalar, neon, neon-dotprod) decodes greedily after a short prompt:

- twice under bench/arm64/insn_count.c (a TCG plugin built here with the host gcc), N1 and N2 tokens: the
  difference over N2 - N1 is the instructions per decoded token, all of them and those inside the kernels' text;
- once without the plugin: emulated milliseconds per token (median of the steps).

    python bench/arm64/kernel_cost.py [--cpu cortex-a76] [--n1 2] [--n2 10] [--levels scalar,neon,neon-dotprod]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARM64_SH = ROOT / "build_scripts" / "arm64.sh"

GUEST = r"""
import json, statistics, sys, time
from emberllm import _kernels
range_file, model_path, level_name, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if range_file:  # the kernels' executable mapping, for the plugin, before any kernel runs
    spans = [[int(a, 16) for a in line.split()[0].split("-")] for line in open("/proc/self/maps")
             if "_kernels" in line and " r-xp " in line]
    with open(range_file + ".tmp", "w") as f:
        f.write(f"{min(s[0] for s in spans):x} {max(s[1] for s in spans):x}\n")
    import os
    os.replace(range_file + ".tmp", range_file)
from emberllm.backends.binding import load_kernels
from emberllm.runtime.model import Model
k = load_kernels()
model = Model(model_path, n_ctx=256, n_threads=1, kernels=k, kernel_level=k.level_names.index(level_name))
prompt = model.tokenize("The capital of France is")
rows = model.decode([(model.sequence, prompt)])
ids, times = [], []
for _ in range(n):
    token = rows.argmax(0)  # greedy as the engine samples it (Sampler.is_argmax): the kernels' argmax
    t0 = time.perf_counter()
    rows = model.decode([(model.sequence, [token])])
    times.append(time.perf_counter() - t0)
    ids.append(token)
print(json.dumps({"level": model.kernel_level_name, "ids": ids, "ms_per_token": 1000 * statistics.median(times)}))
"""


def emulated(cpu: str, level: str, n: int, model: Path, plugin: Path | None, tmp: Path) -> dict:
    """One guest run; with ``plugin``, its instruction counts too."""
    env = {**os.environ, "EMBERLLM_QEMU_CPU": cpu}
    range_file = ""
    if plugin is not None:
        range_file, out = str(tmp / f"range-{level}-{n}"), tmp / f"count-{level}-{n}"
        Path(range_file).unlink(missing_ok=True)
        env["QEMU_PLUGIN"] = f"{plugin},range={range_file},out={out}"
    proc = subprocess.run(["bash", str(ARM64_SH), "python", "-c", GUEST, range_file, str(model), level, str(n)],
                          capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{level}: {proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.splitlines()[-1])
    if plugin is not None:
        fields = dict(kv.split("=") for kv in out.read_text().split()[1:])
        result.update(total=int(fields["total"]), kernels=int(fields["range"]))
    return result


def main() -> int:
    """Measure each level and print one markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", default="cortex-a76")
    ap.add_argument("--n1", type=int, default=2)
    ap.add_argument("--n2", type=int, default=10)
    ap.add_argument("--levels", default="scalar,neon,neon-dotprod")
    ap.add_argument("-m", "--model", default=None, help="GGUF file (default: the Gemma 3 270M of the cache)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from emberllm.runtime.model_store import default_model_path

    model = Path(args.model) if args.model else default_model_path()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        plugin = tmp / "insn_count.so"
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(plugin), str(Path(__file__).with_name(
            "insn_count.c"))], check=True)
        rows = []
        for level in args.levels.split(","):
            a = emulated(args.cpu, level, args.n1, model, plugin, tmp)
            b = emulated(args.cpu, level, args.n2, model, plugin, tmp)
            t = emulated(args.cpu, level, args.n2, model, None, tmp)
            assert a["level"] == b["level"] == t["level"] == level, (a, b, t)
            n = args.n2 - args.n1
            rows.append((level, (b["total"] - a["total"]) / n, (b["kernels"] - a["kernels"]) / n,
                         t["ms_per_token"], b["ids"]))
            print(f"{level}: done", file=sys.stderr, flush=True)
    print(f"Gemma 3 270M Q4_K_M, emulated {args.cpu}, 1 thread, decode tokens {args.n1 + 1}..{args.n2}")
    print("| level | guest insns / token | in kernels | vs scalar (kernels) | emulated ms / token |")
    print("|---|---|---|---|---|")
    base = rows[0][2]
    for level, total, kern, ms, _ in rows:
        print(f"| {level} | {total / 1e6:.1f} M | {kern / 1e6:.1f} M | {base / kern:.2f}x | {ms:.0f} |")
    same = all(r[4] == rows[0][4] for r in rows)
    print(f"greedy ids equal across levels: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
