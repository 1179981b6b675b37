"""Making GGUF files: Hugging Face safetensors -> GGUF (``hf.py``, ``hf_vocab.py``, ``safetensors_read.py``) and
llama-quantize's quantization (``quantize.py``, ``tensor_quant.py``)."""
