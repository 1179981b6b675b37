"""Build hook: compiles core/wasm_kernels through cffi (API mode) at install time."""
from setuptools import setup

setup(cffi_modules=["build_scripts/build_native.py:ffibuilder"])
