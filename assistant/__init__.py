"""Offline support chat assistant: the conversation engine and its parts.

One turn, in the order the engine (``engine``) runs it:
``understanding`` (language, intent, entities, and the route ``policy`` picks) →
retrieval (package ``retrieval``, with ``context`` for follow-up questions) →
``prompting`` → ``generation`` (the model and its decode loop) → ``store``.
``explain`` works on a finished turn; ``web`` and ``cli`` are the surfaces;
``runtime`` builds everything from ``config``.  ``types`` and ``errors`` are
shared by all of them.
"""

__version__ = "0.1.0"
