"""The surfaces over HTTP: one FastAPI app (``server``) with the end-user chat page
(``chat_page``, over ``chatview``), the admin area for support teams (``admin_page``
over the plain functions of ``admin``) and the OpenAI-compatible API (``api``);
``streaming`` runs a turn in a thread for all of them and tracks the turns in flight.

Wiring over the engine, the store and the runtime: no chat logic of its own.
"""
