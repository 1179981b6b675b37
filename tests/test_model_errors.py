"""Files the engine cannot run give one clear error that lists what is supported."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFWriter

from emberllm.models import UnsupportedModelError
from emberllm.runtime.model import Model


def tiny_gguf(path, arch: str, tensor_type: GGMLQuantizationType = GGMLQuantizationType.F32) -> None:
    w = GGUFWriter(str(path), arch)
    w.add_block_count(1)
    w.add_embedding_length(256)
    w.add_feed_forward_length(256)
    w.add_head_count(1)
    w.add_context_length(64)
    w.add_tokenizer_model("llama")
    w.add_token_list(["<unk>", "<s>", "</s>", "a"])
    w.add_token_scores([0.0, 0.0, 0.0, -1.0])
    w.add_token_types([2, 3, 3, 1])
    if tensor_type == GGMLQuantizationType.F32:
        w.add_tensor("token_embd.weight", np.zeros((4, 256), dtype=np.float32))
    else:
        raw = np.zeros((4, 8 * 17), dtype=np.uint8)  # 4 rows of eight 32-element MXFP4 blocks
        w.add_tensor("token_embd.weight", raw, raw_dtype=tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_unknown_architecture_lists_supported(tmp_path):
    path = tmp_path / "mamba.gguf"
    tiny_gguf(path, "mamba")
    with pytest.raises(UnsupportedModelError, match=r"unsupported architecture 'mamba'; supported: .*gemma3"):
        Model(path)


def test_unknown_tensor_type_lists_supported(tmp_path):
    path = tmp_path / "mxfp4.gguf"
    tiny_gguf(path, "gemma3", GGMLQuantizationType.MXFP4)
    with pytest.raises(UnsupportedModelError, match=r"unsupported tensor type\(s\) MXFP4; supported: .*Q4_K.*IQ2_XXS"):
        Model(path)


def test_cli_reports_unknown_architecture_in_one_line(tmp_path):
    path = tmp_path / "mamba.gguf"
    tiny_gguf(path, "mamba")
    proc = subprocess.run([sys.executable, "-m", "emberllm.cli", "run", "-m", str(path), "-p", "hi", "-n", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: unsupported architecture 'mamba'")
    assert "Traceback" not in proc.stderr
