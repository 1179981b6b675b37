"""GGUF files: the reader (``reader.py``, zero-copy, also in Pyodide), the writer (``writer.py``) and the GGML
tensor types' facts (``types.py``)."""
