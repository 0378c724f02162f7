"""Text extraction: one reader per file format, returning sections with headings and pages.

Formats: .md/.markdown, .txt, .html/.htm (boilerplate removed with trafilatura),
.pdf (pypdf, one section per page), .docx (python-docx, heading styles kept),
and FAQ files of question-answer pairs (.csv, .json, .jsonl; one section per
entry).  Knows nothing about chunking, embeddings or indexes.  Every failure
is a DataFormatError naming the file and the reason.
"""

from __future__ import annotations

import csv
import hashlib
import html as html_lib
import io
import json
import logging
import re
from pathlib import Path
from typing import Callable

from assistant.errors import DataFormatError

from .types import ExtractedDocument, Section

log = logging.getLogger(__name__)

QUESTION_KEYS = ("question", "q", "prompt", "title")
ANSWER_KEYS = ("answer", "a", "response", "text")
_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def supported_suffixes() -> tuple[str, ...]:
    return tuple(sorted(READERS))


def extract(source: str, data: bytes, suffix: str | None = None) -> ExtractedDocument:
    """Extract text from ``data`` (the bytes of ``source``), choosing the reader by suffix."""
    suffix = (suffix or Path(source).suffix).lower()
    reader = READERS.get(suffix)
    if reader is None:
        raise DataFormatError(
            f"{source}: unsupported file type {suffix or '(none)'!r}; supported: {', '.join(supported_suffixes())}")
    try:
        title, sections, kind, *hidden = reader(source, data)
    except DataFormatError:
        raise
    except Exception as exc:  # each library fails in its own way; report file + reason
        raise DataFormatError(f"{source}: could not read {suffix} file: {type(exc).__name__}: {exc}") from exc
    sections = tuple(s for s in sections if s.text.strip())
    if not sections:
        raise DataFormatError(f"{source}: no text found (empty file, scanned PDF without text layer, or only markup)")
    return ExtractedDocument(source=source, title=title or Path(source).stem, sections=sections,
                             content_hash=hashlib.sha256(data).hexdigest(), kind=kind,
                             hidden=tuple(hidden[0]) if hidden else ())


def _decode(source: str, data: bytes) -> str:
    for encoding in ("utf-8-sig", "utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ("utf-8-sig",):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        raise DataFormatError(f"{source}: not valid UTF-8 text; save it as UTF-8 and add it again") from None


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def read_markdown_text(text: str) -> tuple[str, list[Section]]:
    """Split Markdown into sections at headings; paragraphs are kept in one section's text."""
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    buffer: list[str] = []
    title = ""
    in_code = False

    def flush() -> None:
        body = "\n".join(buffer).strip()
        if body:
            sections.append(Section(text=body, heading=tuple(h for _, h in path)))
        buffer.clear()

    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_code = not in_code
        match = None if in_code else _MD_HEADING.match(line)
        if match:
            flush()
            level, heading = len(match.group(1)), match.group(2).strip()
            title = title or heading
            while path and path[-1][0] >= level:
                path.pop()
            path.append((level, heading))
        else:
            buffer.append(line)
    flush()
    return title, sections


def _read_markdown(source: str, data: bytes) -> tuple[str, list[Section], str]:
    title, sections = read_markdown_text(_decode(source, data))
    return title, sections, "md"


def _read_text(source: str, data: bytes) -> tuple[str, list[Section], str]:
    text = _decode(source, data)
    return "", [Section(text=p) for p in _paragraphs(text)], "txt"


def _read_html(source: str, data: bytes) -> tuple[str, list[Section], str, list[str]]:
    import trafilatura

    from .screening import html_hidden_text

    raw = _decode(source, data)
    extracted = trafilatura.extract(raw, output_format="markdown", include_comments=False,
                                    include_tables=True, favor_recall=True)
    title = ""
    try:
        meta = trafilatura.extract_metadata(raw)
        title = (meta.title or "") if meta else ""
    except Exception:  # metadata is optional; a page without it still ingests
        title = ""
    if not extracted:
        # trafilatura rejects very short pages; fall back to stripping tags.
        extracted = _strip_tags(raw)
    md_title, sections = read_markdown_text(extracted)
    if not title:
        m = re.search(r"<title[^>]*>(.*?)</title>", raw, re.I | re.S)
        title = html_lib.unescape(m.group(1)).strip() if m else md_title
    return title, sections, "html", html_hidden_text(raw)


def _strip_tags(raw: str) -> str:
    raw = re.sub(r"(?is)<(script|style|nav|footer|header|noscript)\b.*?</\1>", " ", raw)
    raw = re.sub(r"(?i)<h([1-6])[^>]*>(.*?)</h\1>", lambda m: "\n\n" + "#" * int(m.group(1)) + " " + m.group(2) + "\n\n", raw)
    raw = re.sub(r"(?i)</?(p|div|li|br|tr|section|article)\b[^>]*>", "\n\n", raw)
    raw = re.sub(r"<[^>]+>", " ", raw)
    return html_lib.unescape(re.sub(r"[ \t]+", " ", raw))


def _read_pdf(source: str, data: bytes) -> tuple[str, list[Section], str, list[str]]:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        try:
            reader.decrypt("")
        except Exception:
            raise DataFormatError(f"{source}: the PDF is password-protected; save an unprotected copy") from None
    title = ""
    if reader.metadata and reader.metadata.title:
        title = str(reader.metadata.title)
    sections = []
    hidden: list[str] = []
    for number, page in enumerate(reader.pages, start=1):
        text = _pdf_page_text(page, hidden)
        for paragraph in _paragraphs(text):
            sections.append(Section(text=paragraph, page=number))
    return title, sections, "pdf", hidden


def _pdf_page_text(page: object, hidden: list[str]) -> str:
    """The page's text; text drawn invisible (render mode 3 or 7) or in white is added to ``hidden``."""
    state = {"fill": (0.0, 0.0, 0.0), "mode": 0}
    saved: list[dict] = []
    last_hidden = [False]

    def numbers(args: list) -> list[float]:
        try:
            return [float(a) for a in args]
        except (TypeError, ValueError):
            return []

    shown: list[bool] = []  # invisibility at each text-showing operator since pypdf last handed text over

    def invisible_now() -> bool:
        return state["mode"] in (3, 7) or min(state["fill"]) >= 0.95

    def before(op: bytes, args: list, cm: object, tm: object) -> None:
        # pypdf hands text over (``visit``) at a later operator, when the fill may be black again
        # ("1 1 1 rg (hidden) Tj 0 0 0 rg T*"): the style that counts is the one it was shown in.
        if op in (b"Tj", b"TJ", b"'", b'"'):
            shown.append(invisible_now())
        elif op == b"q":
            saved.append(dict(state))
        elif op == b"Q" and saved:
            state.update(saved.pop())
        elif op == b"Tr" and args:
            state["mode"] = int(numbers(args[:1])[0]) if numbers(args[:1]) else 0
        elif op in (b"rg", b"sc", b"scn") and len(numbers(args)) == 3:
            state["fill"] = tuple(numbers(args))
        elif op in (b"g", b"sc", b"scn") and len(numbers(args)) == 1:
            state["fill"] = (numbers(args)[0],) * 3
        elif op in (b"k", b"sc", b"scn") and len(numbers(args)) == 4:
            c, m, y, k = numbers(args)
            state["fill"] = ((1 - c) * (1 - k), (1 - m) * (1 - k), (1 - y) * (1 - k))

    def visit(text: str, cm: object, tm: object, font: object, size: object) -> None:
        if not text.strip():
            return
        invisible = any(shown) if shown else invisible_now()
        shown.clear()
        if invisible and last_hidden[0] and hidden:
            hidden[-1] += text
        elif invisible:
            hidden.append(text)
        last_hidden[0] = invisible

    found = len(hidden)
    try:
        text = page.extract_text(visitor_operand_before=before, visitor_text=visit)  # type: ignore[attr-defined]
    except Exception:  # the visitors are best effort: the page's text matters more than its styling
        del hidden[found:]
        text = page.extract_text()  # type: ignore[attr-defined]
    hidden[:] = [h for h in (" ".join(x.split()) for x in hidden) if h]
    return text or ""


def _read_docx(source: str, data: bytes) -> tuple[str, list[Section], str, list[str]]:
    import docx

    document = docx.Document(io.BytesIO(data))
    title = document.core_properties.title or ""
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    hidden = [h for p in document.paragraphs if (h := _docx_hidden_runs(p))]
    hidden += [h for t in document.tables for row in t.rows for cell in row.cells
               for p in cell.paragraphs if (h := _docx_hidden_runs(p))]
    for paragraph in document.paragraphs:
        text = paragraph.text.strip()
        if not text:
            continue
        style = (paragraph.style.name if paragraph.style is not None else "") or ""
        level = _docx_heading_level(style)
        if level:
            while path and path[-1][0] >= level:
                path.pop()
            path.append((level, text))
            title = title or text
            continue
        sections.append(Section(text=text, heading=tuple(h for _, h in path)))
    for table in document.tables:
        for row in table.rows:
            cells = [c.text.strip() for c in row.cells if c.text.strip()]
            if cells:
                sections.append(Section(text=" | ".join(cells), heading=tuple(h for _, h in path)))
    return title, sections, "docx", hidden


def _docx_hidden_runs(paragraph: object) -> str:
    """Text of a paragraph's runs a reader of the document cannot see: hidden (vanish), white, or under 2 pt."""
    parts = []
    for run in paragraph.runs:  # type: ignore[attr-defined]
        font = run.font
        try:
            white = font.color is not None and font.color.type is not None and str(font.color.rgb) == "FFFFFF"
        except (AttributeError, ValueError):
            white = False
        tiny = font.size is not None and font.size.pt < 2
        if run.text.strip() and (font.hidden or white or tiny):
            parts.append(run.text)
    return " ".join(" ".join(parts).split())


def _docx_heading_level(style: str) -> int:
    if style == "Title":
        return 1
    m = re.match(r"Heading (\d)", style)
    return int(m.group(1)) if m else 0


def _faq_section(source: str, where: str, row: object) -> Section:
    if not isinstance(row, dict):
        raise DataFormatError(f"{source}: {where}: expected an object with 'question' and 'answer'; got {type(row).__name__}")
    lowered = {str(k).strip().lower(): v for k, v in row.items()}
    question = next((lowered[k] for k in QUESTION_KEYS if lowered.get(k)), None)
    answer = next((lowered[k] for k in ANSWER_KEYS if lowered.get(k)), None)
    if not question or not answer:
        raise DataFormatError(
            f"{source}: {where}: needs a non-empty 'question' and 'answer'; found keys {sorted(lowered)}")
    question, answer = str(question).strip(), str(answer).strip()
    return Section(text=f"{question}\n{answer}", heading=(question,), atomic=True)


def _read_faq_csv(source: str, data: bytes) -> tuple[str, list[Section], str]:
    text = _decode(source, data)
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise DataFormatError(f"{source}: empty CSV; the first row must name the columns 'question,answer'")
    sections = [_faq_section(source, f"line {i}", row) for i, row in enumerate(reader, start=2)]
    return "", sections, "faq"


def _read_faq_json(source: str, data: bytes) -> tuple[str, list[Section], str]:
    try:
        payload = json.loads(_decode(source, data))
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{source}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    title = ""
    if isinstance(payload, dict):
        title = str(payload.get("title", ""))
        payload = payload.get("faq", payload.get("items", payload.get("data")))
    if not isinstance(payload, list):
        raise DataFormatError(f"{source}: expected a list of {{question, answer}} objects (or {{'faq': [...]}})")
    return title, [_faq_section(source, f"entry {i}", row) for i, row in enumerate(payload, start=1)], "faq"


def _read_faq_jsonl(source: str, data: bytes) -> tuple[str, list[Section], str]:
    sections = []
    for number, line in enumerate(_decode(source, data).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{source}: line {number}: invalid JSON: {exc.msg}") from None
        sections.append(_faq_section(source, f"line {number}", row))
    return "", sections, "faq"


READERS: dict[str, Callable[[str, bytes], tuple[str, list[Section], str]]] = {
    ".md": _read_markdown, ".markdown": _read_markdown, ".txt": _read_text,
    ".html": _read_html, ".htm": _read_html, ".pdf": _read_pdf, ".docx": _read_docx,
    ".csv": _read_faq_csv, ".json": _read_faq_json, ".jsonl": _read_faq_jsonl,
}
