"""Third-party output that asks nothing of the user, silenced at the edge (the commands and the
server start-up), never inside the library: a program that imports ``assistant`` keeps every log.

``assistant --verbose …`` leaves all of it on.  Each entry says what it hides, so that a new
notice is a decision, not a wildcard.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

# logger -> the lowest level still shown
THIRD_PARTY_LOGGERS = {
    "faiss": logging.WARNING,  # "Loading faiss with AVX2 support." and the fallback lines, each start
    "bm25s": logging.WARNING,  # "Building index from tokens"
    # "Failed to load CPU gemm_4bit_forward from kernels-community": an optional kernel whose
    # fallback is the one this package measures and ships
    "bitsandbytes": logging.ERROR,
    "sentence_transformers": logging.WARNING,
    "httpx": logging.WARNING,  # one line per request to a remote model server
    "httpcore": logging.WARNING,
    "urllib3": logging.WARNING,
    "filelock": logging.WARNING,
    "accelerate": logging.WARNING,  # their INFO lines; a finetuning run's warnings still show
    "peft": logging.WARNING,
}

# (category, message regex): warnings about library internals a user cannot act on
KNOWN_WARNINGS = (
    # deprecations (transformers, peft, torch): news for whoever maintains the calling code, which
    # the test suite, where nothing is silenced, still shows us
    (FutureWarning, r""),
    (UserWarning, r".*TypedStorage is deprecated"),
    (UserWarning, r".*does not have many workers"),
)


class ThirdPartyFilter(logging.Filter):
    """Drops a record of a logger listed above (or of one of its children) below that logger's level."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        while name:
            if name in THIRD_PARTY_LOGGERS:
                return record.levelno >= THIRD_PARTY_LOGGERS[name]
            name = name.rpartition(".")[0]
        return True


def quiet_third_party() -> None:
    """Hide the notices above for the rest of this process: call after the logging is set up and
    before the heavy imports."""
    # transformers configures its own logger from this variable when it is first imported; its
    # INFO/WARNING notices (loss_type=None, generation flags) are advice for model authors
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        # offline nothing downloads, so the only bars left are transformers' "Loading weights"
        # over a local file; a hub download (HF_HUB_OFFLINE=0) keeps its bar
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for name, level in THIRD_PARTY_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    # some libraries set their logger's level when imported (bm25s: DEBUG), after this ran; the
    # root handlers drop those records too
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, ThirdPartyFilter) for f in handler.filters):
            handler.addFilter(ThirdPartyFilter())
    for category, message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    if "transformers" in sys.modules:  # already imported: the variables above came too late for it
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
            if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") == "1":
                hf_logging.disable_progress_bar()
        except Exception:  # noqa: BLE001 - quieting must never stop a start
            pass
