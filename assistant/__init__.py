"""Offline support chat assistant: the conversation engine and its parts.

Sub-modules follow one turn of a chat: ``language`` → ``intents`` →
``policy`` → retrieval (package ``retrieval``) → ``prompting`` →
``generation`` → ``store``; ``explain`` works on a finished turn.
"""

__version__ = "0.1.0"
