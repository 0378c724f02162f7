"""Gradio UI builders: the chat for end users (``build_chat``) and the admin
area for support teams (``build_admin``).  Wiring over the engine, the store
and ``assistant.admin``; no chat logic of their own."""

from .admin_ui import build_admin
from .chat import build_chat

__all__ = ["build_admin", "build_chat"]
