"""Multi-turn context: the retrieval query of a follow-up turn.

Knows conversations and messages, not models or indexes.
"""

from __future__ import annotations

from .types import Conversation


def followup_query(conversation: Conversation, message: str) -> str:
    """The search query for ``message`` given the conversation so far."""
    return message
