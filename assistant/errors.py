"""Domain errors raised by library code.

Only the edges (Gradio UI, CLI, HTTP API) turn these into ``gr.Error``, an exit
code or an HTTP status.  Every message names the parameter or file at fault and
says how to fix it.
"""


class AssistantError(Exception):
    """Base class of every error the assistant raises on purpose."""


class ConfigError(AssistantError, ValueError):
    """A configuration value is missing, malformed or impossible."""


class InputError(AssistantError, ValueError):
    """User input (a message, an upload, a file name) was rejected."""


class ModelLoadError(AssistantError):
    """A model or adapter could not be loaded; the message names the model and the reason."""


class GenerationError(AssistantError):
    """Generation failed or was given invalid settings."""


class DataFormatError(AssistantError, ValueError):
    """A data file is malformed; the message names the file, the line and the problem."""


class IndexNotBuiltError(AssistantError):
    """A retrieval index is missing; the message gives the command that builds it."""


class IndexCorruptError(AssistantError):
    """A retrieval index is unreadable or built with another embedding model."""


class StoreError(AssistantError):
    """The conversation database is unreadable or could not be written."""


class BusyError(AssistantError):
    """The server is at capacity; try again shortly."""


class AuthError(AssistantError):
    """A request lacked a valid key."""
