"""Understanding a message before anything is retrieved or generated: its language
(``language``, with ``scripts`` and ``language_names``), its intent (``intents`` over
``intent_spec``, ``intent_encoder``, ``intent_features``, ``intent_calibration`` and the
opt-in ``intent_tuning``) and its entities (``entities``); then what to do with it (``policy``: answer from the
documents, a fixed reply, a hand-off to a person).

``understand()`` (``pipeline``) is the package's face: one call that gives the engine
and ``assistant understand`` all of that and the route.
Knows nothing about retrieval, the LLM, storage or the web surface.
"""

from .pipeline import Understanding, understand

__all__ = ["Understanding", "understand"]
