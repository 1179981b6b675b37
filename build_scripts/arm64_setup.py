"""The aarch64 environment of build_scripts/arm64.sh: an arm64 CPython 3.11 with emberllm, run under qemu-aarch64.

Everything lives in ``${EMBERLLM_CACHE:-~/.cache/emberllm}/arm64``, never in the repository:

- ``sysroot-<hash>/``: Debian's arm64 ``.deb``s of python3.11 and the libraries it loads, fetched with
  ``apt-get download`` (needs ``dpkg --add-architecture arm64`` and ``apt-get update``, done here when we are root)
  and unpacked with ``dpkg -x``; nothing is installed into the host.
- ``sysroot-<hash>/usr/local/lib/python3.11/dist-packages``: the runtime dependencies of pyproject.toml plus pytest and
  numpy, as PyPI's aarch64 / pure-Python wheels (``pip install --target --platform manylinux2014_aarch64
  --only-binary=:all:``), and emberllm itself: a dist-info (its version and the ``emberllm`` entry point) and a
  ``.pth`` import hook mapping ``emberllm`` onto the checkout given by ``$EMBERLLM_ARM64_SRC`` (core/, edge_server/,
  web/ as pyproject's package-dir says), with the aarch64 kernels first on the package path.
- ``kernels-<hash>/emberllm/_kernels.cpython-311-aarch64-linux-gnu.so``: the cffi extension, its C emitted on the
  host by build_native.py's builder and compiled by ``aarch64-linux-gnu-gcc`` with the native build's flags;
  keyed on the kernel sources, so checkouts with different kernels share the cache without clashing.

Each folder is named by the hash of its inputs (the package lists, pyproject's dependencies and version; the kernel
sources and flags) and appears only complete (built beside it, then renamed), so setup is idempotent and a change
of inputs builds a new one beside the old (never removed under a running emulation: ``rm -rf`` stale ones by
hand).  ``--print-env`` prints ``NAME=value`` lines for arm64.sh.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
KERNEL_DIR = ROOT / "core" / "wasm_kernels"
PY_VERSION = "3.11"
CROSS_CC = "aarch64-linux-gnu-gcc"
QEMU = "qemu-aarch64"
#: python3.11's Depends closure on arm64 (apt-cache depends --recurse), less the tools and -dev packages it does not
#: need to run; libpython3.11-dev only for the headers the extension compiles against.
DEBS = [
    "libc6", "libgcc-s1", "libcrypt1", "zlib1g", "libexpat1", "libffi8", "libssl3", "libsqlite3-0", "libbz2-1.0",
    "liblzma5", "libuuid1", "libncursesw6", "libtinfo6", "libreadline8", "libdb5.3", "libgdbm6", "libnsl2",
    "libtirpc3", "libgssapi-krb5-2", "libkrb5-3", "libk5crypto3", "libkrb5support0", "libkeyutils1", "libcom-err2",
    f"python{PY_VERSION}-minimal", f"libpython{PY_VERSION}-minimal", f"libpython{PY_VERSION}-stdlib",
    f"python{PY_VERSION}", f"libpython{PY_VERSION}-dev",
]
#: what runs under emulation besides the runtime dependencies: the test runner and the reference check's numpy
EXTRA_WHEELS = ["pytest>=8", "numpy>=1.26"]
PLATFORM = "manylinux2014_aarch64"
#: bump to rebuild every cache entry (a change of layout)
LAYOUT = "1"

FINDER = '''\
"""emberllm from the checkout in $EMBERLLM_ARM64_SRC (build_scripts/arm64.sh), aarch64 kernels first on its path."""

import importlib.machinery
import importlib.util
import os
import sys


class _EmberllmArm64Finder:
    """Maps emberllm, emberllm.edge_server and emberllm.web onto the checkout's folders (pyproject's package-dir)."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        src = os.environ.get("EMBERLLM_ARM64_SRC")
        if not src:
            return None
        kernels = os.environ.get("EMBERLLM_ARM64_KERNELS")
        folders = {"emberllm": "core", "emberllm.edge_server": "edge_server", "emberllm.web": "web"}
        if name not in folders:
            return None
        folder = os.path.join(src, folders[name])
        search = [folder]
        if name == "emberllm" and kernels:
            search.insert(0, os.path.join(kernels, "emberllm"))
        init = os.path.join(folder, "__init__.py")
        if not os.path.isfile(init):  # a folder of data files (web/): a namespace package
            spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
            spec.submodule_search_locations = search
            return spec
        return importlib.util.spec_from_file_location(name, init, submodule_search_locations=search)


sys.meta_path.insert(0, _EmberllmArm64Finder)
'''

ENTRY_SCRIPT = '''\
import re
import sys
from {module} import {func}
if __name__ == "__main__":
    sys.argv[0] = re.sub(r"(-script\\.pyw|\\.exe)?$", "", sys.argv[0])
    sys.exit({func}())
'''


def cache_root() -> Path:
    """``$EMBERLLM_CACHE/arm64`` (default ``~/.cache/emberllm/arm64``)."""
    base = os.environ.get("EMBERLLM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "emberllm")
    return Path(base) / "arm64"


def log(message: str) -> None:
    """A progress line on stderr (stdout carries --print-env's output)."""
    print(f"arm64: {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    """Run a command, its output shown only when it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise SystemExit(f"arm64: {shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc


def missing_tools() -> list[str]:
    """The host tools the environment needs that are not on PATH."""
    return [t for t in (QEMU, CROSS_CC, "apt-get", "dpkg") if shutil.which(t) is None]


def load_build_native() -> ModuleType:
    """build_scripts/build_native.py (the cffi builder and the native build's flags)."""
    spec = importlib.util.spec_from_file_location("_emb_build_native", ROOT / "build_scripts" / "build_native.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pyproject() -> dict:
    """pyproject.toml, parsed."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def wheel_requirements() -> list[str]:
    """What pip installs for aarch64: pyproject's runtime dependencies and the extra wheels."""
    return [*pyproject()["project"]["dependencies"], *EXTRA_WHEELS]


def kernels_key() -> str:
    """Hash of what the aarch64 extension is built from: the kernel sources, the binding's API and the flags."""
    h = hashlib.sha256()
    for p in sorted(KERNEL_DIR.glob("*")) + [ROOT / "core" / "backends" / "kernel_api.py",
                                             ROOT / "build_scripts" / "build_native.py", Path(__file__)]:
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    h.update(os.environ.get("EMBERLLM_CFLAGS", "").encode())
    return h.hexdigest()[:16]


def env_key() -> str:
    """Hash of what the sysroot and the wheels come from."""
    project = pyproject()["project"]
    data = {"layout": LAYOUT, "debs": DEBS, "wheels": wheel_requirements(), "version": project["version"],
            "scripts": project.get("scripts", {}), "finder": FINDER}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def ensure_arm64_apt() -> None:
    """``dpkg --add-architecture arm64`` and ``apt-get update`` once, when arm64 packages are unknown to apt."""
    if "arm64" in run(["dpkg", "--print-foreign-architectures"]).stdout.split():
        probe = subprocess.run(["apt-cache", "show", f"python{PY_VERSION}-minimal:arm64"], capture_output=True)
        if probe.returncode == 0:
            return
    if os.geteuid() != 0:
        raise SystemExit("arm64: apt knows no arm64 packages; as root run: dpkg --add-architecture arm64 && "
                         "apt-get update")
    log("dpkg --add-architecture arm64 && apt-get update")
    run(["dpkg", "--add-architecture", "arm64"])
    run(["apt-get", "update", "-qq"])


def build_sysroot(target: Path) -> None:
    """Download the arm64 .debs and unpack them into ``target``."""
    ensure_arm64_apt()
    debs = target.with_name(target.name + ".debs")
    shutil.rmtree(debs, ignore_errors=True)
    debs.mkdir(parents=True)
    log(f"apt-get download {len(DEBS)} arm64 packages")
    run(["apt-get", "download", *[f"{d}:arm64" for d in DEBS]], cwd=debs)
    for deb in sorted(debs.glob("*.deb")):
        run(["dpkg", "-x", str(deb), str(target)])
    shutil.rmtree(debs, ignore_errors=True)


def site_dir(sysroot: Path) -> Path:
    """The guest's /usr/local/lib/python3.11/dist-packages (a site dir of Debian's python, .pth files included)."""
    return sysroot / "usr" / "local" / "lib" / f"python{PY_VERSION}" / "dist-packages"


def install_wheels(sysroot: Path) -> None:
    """aarch64 / pure-Python wheels into the guest's site dir, and emberllm's dist-info and import hook."""
    site = site_dir(sysroot)
    shutil.rmtree(site, ignore_errors=True)
    site.mkdir(parents=True)
    reqs = wheel_requirements()
    log(f"pip install --target (aarch64 wheels): {' '.join(reqs)}")
    run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
         "--target", str(site), "--platform", PLATFORM, "--python-version", PY_VERSION, "--implementation", "cp",
         "--abi", f"cp{PY_VERSION.replace('.', '')}", "--only-binary=:all:", *reqs])
    project = pyproject()["project"]
    (site / "_emberllm_arm64_finder.py").write_text(FINDER)
    (site / "emberllm-arm64.pth").write_text("import _emberllm_arm64_finder\n")
    info = site / f"emberllm-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: emberllm\nVersion: {project['version']}\n")
    scripts = project.get("scripts", {})
    (info / "entry_points.txt").write_text("[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in scripts.items()))
    (info / "INSTALLER").write_text("build_scripts/arm64_setup.py\n")
    (info / "RECORD").write_text("")
    bindir = sysroot / "usr" / "local" / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    for name, ref in scripts.items():
        module, func = ref.split(":")
        (bindir / name).write_text(f"#!/usr/bin/python{PY_VERSION}\n" + ENTRY_SCRIPT.format(module=module, func=func))


def build_kernels(target: Path, sysroot: Path) -> None:
    """The cffi extension for aarch64: C emitted by build_native.py's builder, cross-compiled with its flags."""
    native = load_build_native()
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    objdir = tmp / "obj"
    objdir.mkdir(parents=True)
    glue = objdir / "_kernels.c"
    with contextlib.redirect_stdout(sys.stderr):  # cffi says "generating ..." on stdout
        native.make_builder(absolute=True).emit_c_code(str(glue))
    includes = [f"-I{KERNEL_DIR}", f"-I{sysroot}/usr/include/python{PY_VERSION}",
                f"-I{sysroot}/usr/include/aarch64-linux-gnu/python{PY_VERSION}", "-idirafter", f"{sysroot}/usr/include"]
    # distutils' own flags for an extension (-fPIC, NDEBUG, -fwrapv), then the native build's (build_native.py)
    flags = ["-fPIC", "-DNDEBUG", "-fwrapv", *native.compile_args(), *includes]
    sources = [glue, *native.kernel_sources(absolute=True)]
    log(f"{CROSS_CC}: {len(sources)} sources, {' '.join(native.compile_args())}")

    def compile_one(src: str | Path) -> str:
        obj = objdir / (Path(src).stem + ".o")
        run([CROSS_CC, *flags, "-c", str(src), "-o", str(obj)])
        return str(obj)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        objects = list(pool.map(compile_one, sources))
    pkg = tmp / "emberllm"
    pkg.mkdir()
    so = pkg / f"_kernels.cpython-{PY_VERSION.replace('.', '')}-aarch64-linux-gnu.so"
    run([CROSS_CC, "-shared", "-o", str(so), *objects, "-lm", "-lpthread"])
    shutil.rmtree(objdir)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)  # its existence is the stamp: the name is the hash of the inputs


def setup(force: bool = False) -> dict[str, str]:
    """Build what is missing or stale (under a lock); the paths arm64.sh needs."""
    missing = missing_tools()
    if missing:
        raise SystemExit(f"arm64: missing {' '.join(missing)} (apt-get install qemu-user gcc-aarch64-linux-gnu "
                         "libc6-dev-arm64-cross; build_scripts/test.sh does it as root)")
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    sysroot = root / f"sysroot-{env_key()}"
    kernels = root / f"kernels-{kernels_key()}"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        t0 = time.monotonic()
        built = []
        if force or not sysroot.is_dir():
            tmp = sysroot.with_name(sysroot.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            build_sysroot(tmp)
            install_wheels(tmp)
            shutil.rmtree(sysroot, ignore_errors=True)
            tmp.rename(sysroot)
            built.append("sysroot and wheels")
        if force or not kernels.is_dir():
            build_kernels(kernels, sysroot)
            built.append("aarch64 kernels")
        if built:
            log(f"set up {' and '.join(built)} in {time.monotonic() - t0:.1f} s ({root})")
    return {"ARM64_SYSROOT": str(sysroot), "ARM64_KERNELS": str(kernels),
            "ARM64_PYTHON": str(sysroot / "usr" / "bin" / f"python{PY_VERSION}"),
            "ARM64_BIN": str(sysroot / "usr" / "local" / "bin")}


def main() -> int:
    """Set up (if needed) and optionally print the environment for arm64.sh."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--print-env", action="store_true", help="print NAME=value lines (shell-quoted) on stdout")
    ap.add_argument("--force", action="store_true", help="rebuild everything")
    args = ap.parse_args()
    paths = setup(force=args.force)
    if args.print_env:
        for k, v in paths.items():
            print(f"{k}={shlex.quote(v)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
