"""Chat prompts: the model's Jinja chat template as llama.cpp applies it (``template.py``) and the Jinja-free
prompts for families without one in Pyodide (``plain.py``)."""
