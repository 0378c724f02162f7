"""Configuration: one typed dataclass per subsystem, and the environment.

Environment variables are read here and nowhere else.  All of them start with
``ASSISTANT_``:

``ASSISTANT_HOME``       data folder (model cache, indexes, database); default
                         ``$XDG_CACHE_HOME/offline-assistant`` or ``~/.cache/offline-assistant``
``ASSISTANT_CONFIG``     path of a YAML/JSON config file (see ``AppConfig.load``)
``ASSISTANT_MODEL``      model name, Hugging Face id, folder or ``.gguf`` file
``ASSISTANT_ADAPTER``    LoRA adapter folder(s), comma-separated; ``none`` disables (unset: the shipped one),
                         the retry adapter too
``ASSISTANT_RETRY_ADAPTER`` LoRA adapter folder that answers again when the model declines; ``none`` disables
                         (unset: the shipped one where the registry says so)
``ASSISTANT_DEVICE``     ``auto`` | ``cpu`` | ``cuda``
``ASSISTANT_THREADS``    CPU threads for torch (0 = torch's default)
``ASSISTANT_FAST_DECODE`` weights of the lean CPU decoder: int4, mixed, bfloat16, float32 or off
``ASSISTANT_GENERATOR``  transformers (default) or llama.cpp
``ASSISTANT_QUANTIZATION`` ``nf4`` | ``fp4`` | ``int8`` | ``none``
``ASSISTANT_REMOTE_URL`` OpenAI-compatible server to generate on (``ASSISTANT_REMOTE_MODEL``,
                         ``ASSISTANT_REMOTE_API_KEY``)
``ASSISTANT_API_KEYS``   comma-separated keys for the HTTP API
``ASSISTANT_ADMIN_KEY``  password/key of the admin area (unset: admin disabled)
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError

Quantization = Literal["nf4", "fp4", "int8", "none"]
ComputeDtype = Literal["auto", "float32", "bfloat16", "float16"]
Device = Literal["auto", "cpu", "cuda"]
FastDecode = Literal["int4", "mixed", "bfloat16", "float32", "off"]

QUANTIZATIONS = ("nf4", "fp4", "int8", "none")
COMPUTE_DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")
FAST_DECODES = ("int4", "mixed", "bfloat16", "float32", "off")

ENV_PREFIX = "ASSISTANT_"
_ORIGIN = re.compile(r"^https?://(?:[a-z0-9\-]+(?:\.[a-z0-9\-]+)*|\[[0-9a-f:.]+\])(?::\d{1,5})?$")


def env(name: str, default: str | None = None) -> str | None:
    """Read ``ASSISTANT_<name>``; empty strings count as unset."""
    value = os.environ.get(ENV_PREFIX + name)
    return value if value not in (None, "") else default


def assistant_home() -> Path:
    """The data folder: model cache, indexes and the database live below it."""
    configured = env("HOME")
    if configured:
        home = Path(configured).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        home = Path(base) / "offline-assistant"
    home.mkdir(parents=True, exist_ok=True)
    return home


@dataclass
class ModelConfig:
    """Which model to load and how."""

    name: str = "qwen2.5-coder-1.5b-instruct"
    """A registry name (``assistant models``), a Hugging Face id, a local folder or a ``.gguf`` file."""
    quantization: Quantization = "nf4"
    """Weight quantization through bitsandbytes; ``none`` keeps full precision."""
    compute_dtype: ComputeDtype = "auto"
    """dtype of activations: ``auto`` is bfloat16 on CUDA and for 4-bit on CPU, float32 otherwise on CPU."""
    device: Device = "auto"
    """``auto`` picks CUDA when present, else CPU."""
    threads: int = 0
    """CPU threads for torch; 0 leaves torch's default."""
    adapters: tuple[str, ...] | None = None
    """LoRA adapter folders loaded with peft on top of the base, in order; ``None`` (the default) loads
    the adapter shipped for the model in ``knowledge/adapters/`` when there is one, ``()`` none."""
    retry_adapter: str | None = None
    """A LoRA adapter folder kept beside the weights (unmerged) that answers a second time when the model
    declines a question its sources were shown for (``ChatConfig.retry_declines``); lean decoder only.
    ``None`` (the default): the shipped adapter where the registry says so (``ModelSpec.adapter_on_decline``);
    ``""`` or ``none``: no second try."""
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"
    """Attention kernel for generation; explanations switch to eager on demand."""
    fast_decode: FastDecode = "int4"
    """Weights of the lean CPU forward that generates answers (``assistant.generation.fastdecode``, Llama and Gemma 3
    models on CPU; others keep transformers): ``int4`` (4-bit groups for decode, bf16 for prefill),
    ``mixed`` (a GGUF file's matrices of 6 bits or more as 8-bit rows, its finer output matrix re-scoring
    the best tokens: the file's own model, about 10% slower to decode; ``gguf_lean``), ``bfloat16``,
    ``float32``, or ``off`` to generate with transformers' own forward."""
    decode_batch: int = 8
    """Most conversations whose decode steps of the lean decoder run as one batch (``assistant.generation.batching``:
    one read of the weights serves them all); 1 runs each conversation's steps alone."""
    generator: Literal["transformers", "llama.cpp"] = "transformers"
    """What generates answers locally: this process's torch model (with ``fast_decode``), or llama.cpp on the
    model's GGUF file (``pip install -e '.[llamacpp]'``; adapters are not applied there)."""
    remote_url: str | None = None
    """Base URL (``http://host:port/v1``) of an OpenAI-compatible server to generate on;
    the local model then only tokenizes, budgets and explains."""
    remote_model: str = "default"
    """Model name to ask the remote server for."""
    remote_api_key: str | None = None

    def __post_init__(self) -> None:
        if not self.name or not str(self.name).strip():
            raise ConfigError("model.name is empty: give a model name such as 'gemma-3-270m'")
        if self.quantization not in QUANTIZATIONS:
            raise ConfigError(f"model.quantization must be one of {QUANTIZATIONS}; got {self.quantization!r}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ConfigError(f"model.compute_dtype must be one of {COMPUTE_DTYPES}; got {self.compute_dtype!r}")
        if self.device not in DEVICES:
            raise ConfigError(f"model.device must be one of {DEVICES}; got {self.device!r}")
        if self.generator not in ("transformers", "llama.cpp"):
            raise ConfigError(f"model.generator must be 'transformers' or 'llama.cpp'; got {self.generator!r}")
        if self.fast_decode not in FAST_DECODES:
            raise ConfigError(f"model.fast_decode must be one of {FAST_DECODES}; got {self.fast_decode!r}")
        if not isinstance(self.decode_batch, int) or not 1 <= self.decode_batch <= 64:
            raise ConfigError(f"model.decode_batch must be a whole number from 1 to 64; got {self.decode_batch!r}")
        if not isinstance(self.threads, int) or self.threads < 0:
            raise ConfigError(f"model.threads must be a whole number >= 0; got {self.threads!r}")
        if self.remote_url and not str(self.remote_url).startswith(("http://", "https://")):
            raise ConfigError(f"model.remote_url must start with http:// or https://; got {self.remote_url!r}")
        if isinstance(self.adapters, str):
            self.adapters = tuple(a for a in self.adapters.split(",") if a.strip())
        if self.adapters is not None:
            self.adapters = tuple(self.adapters)
        if isinstance(self.retry_adapter, str) and self.retry_adapter.strip().lower() in ("", "none"):
            self.retry_adapter = ""


@dataclass
class GenerationConfig:
    """Sampling settings for one answer."""

    max_new_tokens: int = 256
    """Upper bound on the answer's length in tokens (1..4096)."""
    temperature: float = 0.0
    """0 means greedy decoding; otherwise 0 < t <= 2."""
    top_p: float = 1.0
    """Nucleus sampling mass, 0 < top_p <= 1."""
    repetition_penalty: float = 1.1
    """>= 1.0; 1.0 disables it.  Applies to tokens the answer already produced, not to the prompt's."""
    seed: int | None = None
    """Seed for sampling; ``None`` draws a fresh one."""
    stop_on_repeat: int = 8
    """End the answer when it loops (the loop small models fall into): a stretch of at least this many
    tokens said twice in a row, or a third time (``generation.local.loop_length``), the repeat dropped;
    streaming holds back only the newest tokens that may still turn out to start such a repeat
    (``generation.local.Echoes``: usually none or a word). 0: off."""
    lookup_tokens: int = 8
    """Prompt-lookup decoding on the lean CPU forward: propose up to this many tokens copied from the
    prompt or the answer where its last tokens occurred before, and check them in one forward pass
    (``assistant.generation.lookup``).  How many of them a pass checks is chosen as it goes, from what
    the decoder's passes cost by rows on this machine and how often the answer's drafts were right
    (``lookup.DraftLength``).  The answer is the same as without it; only faster.  0: off."""
    scripts: tuple[str, ...] = ()
    """The writing systems the answer may write letters of (``understanding.scripts`` names: "latin",
    "han", "cyrillic", ...); a token writing a letter of any other scores -inf
    (``generation.script_mask``).  Empty: any.  The engine sets it for each turn where
    ``chat.keep_scripts`` is on."""

    def __post_init__(self) -> None:
        if not isinstance(self.max_new_tokens, int) or not 1 <= self.max_new_tokens <= 4096:
            raise ConfigError(f"max_new_tokens must be an integer from 1 to 4096; got {self.max_new_tokens!r}")
        if not isinstance(self.temperature, (int, float)) or not 0.0 <= self.temperature <= 2.0:
            raise ConfigError(f"temperature must be between 0 and 2; got {self.temperature!r}")
        if not isinstance(self.top_p, (int, float)) or not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1]; got {self.top_p!r}")
        if not isinstance(self.repetition_penalty, (int, float)) or not 1.0 <= self.repetition_penalty <= 3.0:
            raise ConfigError(f"repetition_penalty must be between 1.0 and 3.0; got {self.repetition_penalty!r}")
        if isinstance(self.stop_on_repeat, bool) or not isinstance(self.stop_on_repeat, int) \
                or not (self.stop_on_repeat == 0 or 2 <= self.stop_on_repeat <= 64):
            raise ConfigError(f"stop_on_repeat must be 0 (off) or 2..64 tokens; got {self.stop_on_repeat!r}")
        if isinstance(self.lookup_tokens, bool) or not isinstance(self.lookup_tokens, int) \
                or not 0 <= self.lookup_tokens <= 32:
            raise ConfigError(f"lookup_tokens must be 0 (off) to 32 draft tokens; got {self.lookup_tokens!r}")
        if isinstance(self.scripts, str):
            self.scripts = tuple(s.strip() for s in self.scripts.split(",") if s.strip())
        self.scripts = tuple(self.scripts)
        if self.scripts:
            from .understanding.scripts import SCRIPT_RANGES

            unknown = sorted(set(self.scripts) - {name for _lo, _hi, name in SCRIPT_RANGES})
            if unknown:
                raise ConfigError(f"scripts: unknown script name(s) {', '.join(unknown)}")


@dataclass
class ChatConfig:
    """How the engine builds a turn."""

    system_prompt: str = (
        "You are {name}, a helpful support assistant. Answer briefly and politely. "
        "When sources are given, answer only from them."
    )
    """System prompt; ``{name}`` is replaced by ``assistant_name``."""
    assistant_name: str = "Assistant"
    max_message_chars: int = 4000
    """Longer messages are rejected with a clear error."""
    context_tokens: int = 2048
    """Token budget of the prompt plus the answer (capped by the model's context)."""
    retrieval_k: int = 4
    """How many sources a question retrieves."""
    summary_tokens: int = 160
    """Budget of the running summary of turns that left the context; 0 drops them instead."""
    secrets: tuple[str, ...] = ()
    """Text no answer may contain — a discount code, an internal phone number written into the system
    prompt for staff: the output guard withholds an answer holding one, also spaced out, recased or
    full-width (``prompting.LeakGuard``).  The server's API and admin keys are guarded without being
    listed here."""
    screen_messages: bool = True
    """Check each user message for an attempt to take the assistant over — to erase or replace its
    instructions, extract them, give it a new identity, forge a role tag (``retrieval.screening.
    screen_message``) — and answer one with the fixed ``prompting.DECLINED_TAKEOVER`` reply, without
    generating; the attempt is listed in the admin area.  A request about the answer's form ("reply
    only in German") is not such an attempt.  Off with the output guard (``Engine.guard``)."""
    answer_without_sources: bool = False
    """False: a question for which the knowledge index finds no relevant source gets the fixed
    "that is not in my documents" reply in the user's language, without generating (a small model
    would make an answer up).  True: the model answers anyway.  No effect without an index."""
    check_numbers: bool = True
    """An answer from sources that states a number none of them gives (nor the system prompt, nor the
    conversation) — an invented phone number, price, size or date — is replaced by the fixed "not in
    my documents" reply, and listed in the admin area (``assistant.grounding``).  A number the source
    writes in words ("five days" answered "5 days") counts as invented."""
    check_support: bool = True
    """True: an answer from sources that the sources hardly made more likely — the model would have written it
    without them: a generic tutorial, a "no" the documents never state, a free-worded "the document does
    not say" — is replaced by the fixed "not in my documents" reply, and listed in the admin area
    (``grounding.source_support``: one more short pass of the model over the question and the answer's
    first tokens with the sources left out; the answer's tokens that restate the question are not counted).
    Only where the model runs in this process (not llama.cpp or a remote server); an answer the retry adapter
    gave is rescored by the adapter.  The streamed answer is replaced when the turn ends.  Off by default until
    2026-12-07: counted over every first token, it replaced right answers that restate the question at
    length (6 of 168 XQuAD answers on a report half, in Greek and Hindi); with the restated tokens left
    out, no right answer of the dev halves (xquad-dev, the user guide) scores below 0.34.
    See ``bench/results/answers.md``."""
    support_min: float = 0.2
    """The least mean log-probability gain (nats per answer token) the sources must give an answer
    (``check_support``).  Chosen on the dev halves of xquad-dev and the user guide (``bench/answers.py
    --split dev --support on --support-min -10``, 2026-12-07): the lowest right answer gained 0.34, an
    answer to a question whose article was not indexed 0.01, a free-worded "the passage does not say"
    0.23."""
    reply_confidence: float = 0.65
    """A message the intent model routes to a brief fixed reply (greeting, thanks, feedback, "what can you
    do?") with less confidence than this is looked up in the documents first, and answered from them when
    they cover it, as an out-of-scope message is: "纤毛是用来做什么的？" ("what are cilia used for?")
    sits close to "这个机器人是做什么的？" ("what is this bot for?").  0 always replies; 1 looks every
    such message up.  Chosen on xquad-dev's dev half and ``knowledge/intents_validation.jsonl``
    (``python -m bench.routes``)."""
    translate_queries: bool = False
    """True: a question in a language few of the documents are written in (under a tenth of the chunks)
    is also searched for rewritten by the answering model into the documents' main language
    (``assistant.crosslingual``), one short generation more on such turns.  It finds the right passage
    more often in a large collection in another language (``bench/retrieval.py --rewrite``), but on the
    shipped guide, which the question as asked already finds, it changed sources enough to cost two
    right answers and two declines of 36 non-English questions (``bench.answers``): off by default."""
    translate_from: tuple[str, ...] = ("zh", "de", "es", "ru")
    """The question languages ``translate_queries`` rewrites (ISO codes; empty: every language).  The
    default: those where the default model's rewrite raised R@1 by at least 0.05 on xquad-dev's dev half
    (``bench/retrieval.py --rewrite 30 --rewrite-split dev``; zh 0.625 → 0.875, de, es and ru +0.10 to
    +0.125); from Arabic, Greek, Hindi and Thai its translations lost more than they found (Hindi 0.867
    → 0.500), from Romanian, Turkish and Vietnamese they changed little."""
    answer_in_language: bool = True
    """Where a source shown is written in another language than the question, hold the answer back until
    its prose shows its language (24 letters, code and file names left out), and when it began in a
    source's language instead of the user's, ask once more with "Answer in <the user's language>." after
    the question; the second answer stands (``turn_checks.AnswerLanguage``).  Such turns show their first
    text a few tokens later."""
    keep_scripts: bool = True
    """Write each answer only in Latin letters, the scripts of the user's language and the scripts the
    message uses (``GenerationConfig.scripts``, ``generation.script_mask``): the default model otherwise
    drifts into Chinese halfway through a German answer when a source shown is Chinese.  Off where answers
    must write other scripts than the question's (a translation into Japanese asked in English)."""
    retry_declines: bool = True
    """When the model answers a question it was shown sources for with the fixed "not in my documents"
    reply, ask once more with the retry adapter (``ModelConfig.retry_adapter``), and show that answer
    instead (it passes the same checks, the answer's language and its support among them; a second decline
    stands).  The refusal is held back until then,
    so the user sees one answer.  No effect without a retry adapter."""

    def __post_init__(self) -> None:
        if self.max_message_chars < 1:
            raise ConfigError(f"chat.max_message_chars must be >= 1; got {self.max_message_chars}")
        if self.context_tokens < 256:
            raise ConfigError(f"chat.context_tokens must be >= 256; got {self.context_tokens}")
        if not 0 <= self.summary_tokens <= self.context_tokens // 2:
            raise ConfigError(f"chat.summary_tokens must be from 0 to half of context_tokens; got {self.summary_tokens}")
        if isinstance(self.support_min, bool) or not isinstance(self.support_min, (int, float)) \
                or not -10.0 <= self.support_min <= 10.0:
            raise ConfigError(f"chat.support_min must be a number of nats from -10 to 10; got {self.support_min!r}")
        if not 0.0 <= self.reply_confidence <= 1.0:
            raise ConfigError(f"chat.reply_confidence must be from 0 to 1; got {self.reply_confidence}")
        if not 0 <= self.retrieval_k <= 20:
            raise ConfigError(f"chat.retrieval_k must be from 0 to 20; got {self.retrieval_k}")
        if isinstance(self.translate_from, str) or not all(isinstance(x, str) for x in self.translate_from):
            raise ConfigError(f"chat.translate_from must be a list of language codes; got {self.translate_from!r}")
        self.translate_from = tuple(x.strip().lower() for x in self.translate_from)
        if isinstance(self.secrets, str) or not all(isinstance(x, str) for x in self.secrets):
            raise ConfigError(f"chat.secrets must be a list of strings; got {self.secrets!r}")
        self.secrets = tuple(self.secrets)
        short = [x for x in self.secrets if len(x.strip()) < 4]
        if short:
            raise ConfigError(f"chat.secrets: {short!r} is shorter than 4 characters; it would withhold "
                              f"ordinary answers")


@dataclass
class AppConfig:
    """Everything the server needs; loaded from a file, then the environment."""

    model: ModelConfig = field(default_factory=ModelConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    chat: ChatConfig = field(default_factory=ChatConfig)
    home: Path = field(default_factory=assistant_home)
    host: str = "127.0.0.1"
    port: int = 7860
    api_keys: tuple[str, ...] = ()
    admin_key: str | None = None
    welcome_message: str = "Hi! Ask me anything about the documents I know ({topics})."
    """Shown above the chat; ``{topics}`` becomes the titles of the documents loaded (the admin area can change
    it)."""
    example_prompts: tuple[str, ...] = ()
    """The chat page's example prompts.  Empty (the default): questions the shipped guide answers while it is
    what is loaded, else one about what the assistant covers and summaries of the team's largest documents."""
    allowed_origins: tuple[str, ...] = ()
    """Web sites (``https://www.example.com``) allowed to embed the chat (docs/embedding.md); ``*`` any."""
    allowed_image_origins: tuple[str, ...] = ()
    """Origins (``https://cdn.example.com``: scheme, host, optional port) that images in answers may load
    from.  Empty (the default): no image named in model output or a document is ever fetched; each is shown
    as a link with its full address instead.  Also the only sources besides the server in ``img-src``."""
    rate_limit_per_minute: int = 60
    max_queue: int = 32

    def __post_init__(self) -> None:
        for name in ("port", "rate_limit_per_minute", "max_queue"):
            if not isinstance(getattr(self, name), int) or isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be a whole number; got {getattr(self, name)!r}")
        for name in ("api_keys", "allowed_origins", "allowed_image_origins", "example_prompts"):
            value = getattr(self, name)
            if isinstance(value, str):  # a prompt may hold commas: it is one prompt
                value = (value,) if name == "example_prompts" else tuple(v.strip() for v in value.split(",")
                                                                         if v.strip())
            if not isinstance(value, (tuple, list)) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{name} must be a list of strings; got {value!r:.80}")
            setattr(self, name, tuple(value))
        self.allowed_image_origins = tuple(dict.fromkeys(o.rstrip("/").lower() for o in self.allowed_image_origins))
        for origin in self.allowed_image_origins:
            if not _ORIGIN.match(origin):
                raise ConfigError(f"allowed_image_origins: {origin!r} must be an origin such as "
                                  "https://cdn.example.com (http or https, host, optional port; no path, no *)")
        if self.admin_key is not None and not isinstance(self.admin_key, str):
            raise ConfigError(f"admin_key must be a string; got {type(self.admin_key).__name__}")
        if not isinstance(self.home, (str, Path)):
            raise ConfigError(f"home must be a folder path; got {self.home!r:.80}")
        if not 0 < self.port < 65536:
            raise ConfigError(f"port must be 1..65535; got {self.port}")
        if self.rate_limit_per_minute < 1:
            raise ConfigError(f"rate_limit_per_minute must be >= 1; got {self.rate_limit_per_minute}")
        if self.max_queue < 1:
            raise ConfigError(f"max_queue must be >= 1; got {self.max_queue}")
        self.home = Path(self.home)

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> "AppConfig":
        """Read a YAML or JSON file (``ASSISTANT_CONFIG`` when ``path`` is None), then apply env vars."""
        data: dict[str, Any] = {}
        path = path or env("CONFIG")
        if path:
            data = _read_config_file(Path(path))
        where = f"config file {path}" if path else "config"
        model = _section(data, "model", where)
        generation = _section(data, "generation", where)
        chat = _section(data, "chat", where)
        if env("MODEL"):
            model["name"] = env("MODEL")
        if env("ADAPTER"):
            adapter = env("ADAPTER")
            model["adapters"] = () if adapter.lower() == "none" else tuple(adapter.split(","))
            if adapter.lower() == "none":
                model["retry_adapter"] = ""  # no adapter at all, as --no-adapter
        if env("RETRY_ADAPTER"):
            model["retry_adapter"] = env("RETRY_ADAPTER")
        if env("REMOTE_URL"):
            model["remote_url"] = env("REMOTE_URL")
        if env("REMOTE_MODEL"):
            model["remote_model"] = env("REMOTE_MODEL")
        if env("REMOTE_API_KEY"):
            model["remote_api_key"] = env("REMOTE_API_KEY")
        if env("DEVICE"):
            model["device"] = env("DEVICE")
        if env("QUANTIZATION"):
            model["quantization"] = env("QUANTIZATION")
        if env("THREADS"):
            model["threads"] = _int_env("THREADS")
        if env("FAST_DECODE"):
            model["fast_decode"] = env("FAST_DECODE")
        if env("GENERATOR"):
            model["generator"] = env("GENERATOR")
        if env("API_KEYS"):
            data["api_keys"] = tuple(k.strip() for k in env("API_KEYS").split(",") if k.strip())
        if env("ADMIN_KEY"):
            data["admin_key"] = env("ADMIN_KEY")
        for key in ("api_keys", "allowed_origins", "allowed_image_origins", "example_prompts"):
            if key in data and isinstance(data[key], list):
                data[key] = tuple(data[key])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown config key(s) {sorted(unknown)}; known: {sorted(known)}")
        try:
            return cls(
                model=ModelConfig(**model),
                generation=GenerationConfig(**generation),
                chat=ChatConfig(**chat),
                **{**data, **overrides},
            )
        except (TypeError, ValueError) as exc:  # unknown field inside a section, a value of the wrong type
            raise ConfigError(f"{where}: {exc}") from exc


def _int_env(name: str) -> int:
    raw = env(name)
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{name} must be a whole number; got {raw!r}") from None


def _section(data: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    """``data[name]`` removed from ``data``: a mapping with string keys (absent or empty: {})."""
    value = data.pop(name, None) or {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"{where}: `{name}` must be a mapping of settings (name: value); got {value!r:.80}")
    return dict(value)


def _read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # yaml/json parse errors carry line numbers in their text
        raise ConfigError(f"config file {path} is not valid: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level; got {type(data).__name__}")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"config file {path}: setting names must be text; got {bad[0]!r}")
    return data
