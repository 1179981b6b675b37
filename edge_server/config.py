"""Server settings (filled by ``emberllm serve``'s flags and ``EMBERLLM_ARG_*`` environment variables)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emberllm.edge_server.security import CorsPolicy
from emberllm.sampling import SamplingParams


@dataclass
class ServerConfig:
    """Everything the app needs to know; the model itself is loaded in the background at start-up."""

    model_path: Path | None = None
    n_ctx: int = 4096
    n_threads: int | None = None
    n_batch: int = 512
    n_parallel: int = 1
    #: llama-server's --kv-unified: every slot may use the whole -c, the slots together at most -c tokens
    kv_unified: bool = False
    #: llama-server's --sleep-idle-seconds: unload the one model after this long without requests (None: never)
    sleep_idle_s: float | None = None
    #: llama-server's --cache-ram (bytes of the host-RAM prompt cache; 0: none) and --cache-idle-slots
    prompt_cache_bytes: int = 0
    cache_idle_slots: bool = True
    api_key: str | None = None
    alias: str | None = None
    chat_template: str | None = None
    webui: bool = True
    metrics: bool = False
    max_body_bytes: int = 1 << 20
    timeout_s: float = 600.0
    max_queue: int = 64
    n_predict_max: int = -1
    truncate_prompts: bool = False
    context_shift: bool = False
    verbose: bool = False
    slots_endpoint: bool = True
    #: llama-server's --reasoning (on, off, auto) and --reasoning-format; --chat-template-kwargs
    reasoning: str = "auto"
    reasoning_format: str = "auto"
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    #: the command line's sampling settings (``--temp``, ``--top-k``, ``-s``...): defaults of every request
    sampling: SamplingParams = field(default_factory=SamplingParams)
    web_dir: Path | None = None
    use_mmap: bool = True
    n_gpu_layers: int | None = None
    device: str | None = None
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    cors: CorsPolicy = field(default_factory=CorsPolicy)
    #: llama-server's --ui-mcp-proxy: /cors-proxy forwards requests (403 otherwise)
    ui_mcp_proxy: bool = False
    embeddings: bool = False
    rerank: bool = False
    pooling: str | None = None
    embd_normalize: int = 2
    #: several models by name (``models.py``): the ``-m`` files by name, the models folder, the limits, the
    #: default keep-alive (seconds; negative: forever); ``multi_model`` false is llama-server's one-model mode
    models: dict[str, Path] = field(default_factory=dict)
    models_dir: Path | None = None
    models_max: int | None = None
    models_memory: int | None = None
    keep_alive_s: float = 300.0
    multi_model: bool = False
    #: llama-server's ``--tags``: labels /v1/models reports for the model
    tags: list[str] = field(default_factory=list)

    @property
    def model_n_ctx(self) -> int:
        """The context the model is loaded with for its ``n_parallel`` slots: ``n_ctx`` split between them, or
        with ``kv_unified`` the whole ``n_ctx`` for each (``n_ctx`` tokens of them in use at once)."""
        return self.n_ctx * self.n_parallel if self.kv_unified and self.n_ctx > 0 else self.n_ctx

    @property
    def kv_pool(self) -> int | None:
        """With ``kv_unified``: the tokens all slots together may hold (``n_ctx``)."""
        return self.n_ctx if self.kv_unified and self.n_ctx > 0 else None

    @property
    def aliases(self) -> list[str]:
        """``--alias``'s names (llama-server takes a comma-separated list), sorted."""
        return sorted({a.strip() for a in (self.alias or "").split(",") if a.strip()})

    @property
    def model_name(self) -> str:
        """The model id reported by ``/v1/models`` and in responses (``--alias``, its alphabetically first name when
        it lists several as llama-server does, or the file name)."""
        first = self.aliases[0] if self.aliases else None
        if self.model_path is None:
            return first or ""
        return first or self.model_path.name
