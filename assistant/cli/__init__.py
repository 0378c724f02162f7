"""Command-line interface: ``assistant <command>``.

Each sub-module registers one command group with ``register(subparsers)`` and
imports heavy libraries (torch, transformers, faiss) only inside the handler,
so ``assistant --help`` stays instant.  Handlers only wire library calls
together; domain errors become exit code 2 with the message on stderr.
Knows no chat, retrieval or model logic of its own.
"""
