"""The turn's prompt, rebuilt with some sources or the history left out, for
the leave-one-out attribution of ``assistant.explain.explainer``: re-rendered from its
parts when that reproduces the stored prompt exactly, else cut by token spans.

Knows nothing about attention or scoring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..errors import InputError
from ..generation.models import LoadedModel
from ..prompting import LANGUAGE_NAMES, MARKER, PromptParts, build_prompt, render
from ..types import Segment, Turn
from .textspans import token_pieces


@dataclass
class Rebuild:
    """How to render the prompt with some sources or the history left out."""

    parts: PromptParts | None
    """Parts that re-render the turn's prompt exactly (None: fall back to cutting token spans)."""
    source_segments: list[Segment]
    history_segments: list[Segment]


def history_turns(tokenizer: Any, turn: Turn, history_segments: list[Segment]) -> list[Turn]:
    """Recover the history (user, answer) pairs from their token spans."""
    probe = render(tokenizer, [{"role": "system", "content": "S"}, {"role": "user", "content": "UUUU"},
                               {"role": "assistant", "content": "AAAA"}, {"role": "user", "content": "Q"}])
    between = probe[probe.find("UUUU") + 4: probe.find("AAAA")]
    turns = []
    for seg in history_segments:
        text = tokenizer.decode(turn.prompt_ids[seg.start:seg.end], clean_up_tokenization_spaces=False)
        at = text.find(seg.text)
        rest = text[at + len(seg.text):] if at >= 0 else ""
        answer = rest[len(between):] if rest.startswith(between) else rest
        turns.append(Turn(user=seg.text, answer=answer.strip()))
    return turns


def prepare_rebuild(lm: LoadedModel, turn: Turn) -> tuple[Rebuild, list[str]]:
    tok = lm.tokenizer
    by_kind: dict[str, list[Segment]] = {}
    for seg in turn.segments:
        by_kind.setdefault(seg.kind, []).append(seg)
    sources = by_kind.get("source", [])
    history = by_kind.get("history", [])
    notes: list[str] = []
    try:
        system = by_kind["system"][0].text
        message = by_kind["message"][0].text
        summary = by_kind["summary"][0].text if "summary" in by_kind else ""
        src = [turn.sources[s.ref if s.ref is not None else i] for i, s in enumerate(sources)]
        found = MARKER.search(tok.decode(list(turn.prompt_ids))) if src else None
        # an answer asked again in the user's language had "Answer in …" after the question
        for remind in dict.fromkeys(["", turn.language if turn.language in LANGUAGE_NAMES else ""]):
            parts = PromptParts(system=system, message=message, history=history_turns(tok, turn, history),
                                sources=src, summary=summary, marker=found.group(1) if found else "",
                                remind=remind)
            again = build_prompt(tok, parts, budget=10 * len(turn.prompt_ids) + 4096).input_ids
            if again == list(turn.prompt_ids):
                break
        if again != list(turn.prompt_ids):
            notes.append("the prompt could not be re-rendered exactly; ablations cut token spans instead")
            parts = None
    except (KeyError, IndexError, InputError) as exc:
        notes.append(f"the prompt could not be re-rendered ({exc}); ablations cut token spans instead")
        parts = None
    return Rebuild(parts=parts, source_segments=sources, history_segments=history), notes


def content_token_range(tok: Any, ids: Sequence[int], seg: Segment) -> tuple[int, int]:
    pieces = token_pieces(tok, ids[seg.start:seg.end])
    full = "".join(p for p, _, _ in pieces)
    content = seg.text.strip()
    at = full.find(content[:40]) if content else -1
    if at < 0:
        return seg.start, seg.end
    lo, hi, pos = None, seg.start, 0
    for text, a, b in pieces:
        end = pos + len(text)
        if end > at and pos < at + len(content):
            lo = seg.start + a if lo is None else lo
            hi = seg.start + b
        pos = end
    return (lo if lo is not None else seg.start), hi


def variant(lm: LoadedModel, turn: Turn, rb: Rebuild, keep_sources: Sequence[bool], keep_history: bool) -> list[int]:
    """Prompt token ids with the unkept sources (and maybe the history) left out."""
    if rb.parts is not None:
        p = rb.parts
        parts = PromptParts(system=p.system, message=p.message,
                            history=list(p.history) if keep_history else [],
                            sources=[s for s, k in zip(p.sources, keep_sources) if k],
                            summary=p.summary if keep_history else "", marker=p.marker, remind=p.remind)
        return build_prompt(lm.tokenizer, parts, budget=10 * len(turn.prompt_ids) + 4096).input_ids
    cut: list[tuple[int, int]] = []
    for seg, keep in zip(rb.source_segments, keep_sources):
        if not keep:
            cut.append(content_token_range(lm.tokenizer, turn.prompt_ids, seg))
    if not keep_history:
        cut.extend((s.start, s.end) for s in rb.history_segments)
    ids = list(turn.prompt_ids)
    for a, b in sorted(cut, reverse=True):
        del ids[a:b]
    return ids


# -- the explanation -----------------------------------------------------------

def check_turn(lm: LoadedModel, turn: Turn) -> list[int]:
    if not turn.prompt_ids or not turn.segments:
        raise InputError("this answer has no prompt to explain (it was a fixed reply, not generated from sources)")
    segs = turn.segments
    if segs[0].start != 0 or segs[-1].end != len(turn.prompt_ids) or any(a.end != b.start for a, b in zip(segs, segs[1:])):
        raise InputError("the turn's segments do not tile its prompt; it cannot be explained")
    answer_ids = list(turn.answer_ids)
    if not answer_ids and turn.answer:
        answer_ids = lm.tokenizer(turn.answer, add_special_tokens=False)["input_ids"]
    if not answer_ids:
        raise InputError("this turn has no answer tokens to explain")
    limit = lm.context_length
    if len(turn.prompt_ids) + len(answer_ids) > limit:
        raise InputError(f"prompt + answer are {len(turn.prompt_ids) + len(answer_ids)} tokens, more than the "
                         f"model's context of {limit}; cannot explain")
    return answer_ids
