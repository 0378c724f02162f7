"""Documents → chunks → embeddings → FAISS + BM25 index on disk → search.

This package knows nothing about the LLM, the chat engine or the UI.
"""
