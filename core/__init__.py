"""emberllm: local LLM inference with a Python core and C SIMD kernels."""

__version__ = "0.1.0"
