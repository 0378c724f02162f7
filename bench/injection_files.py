"""The uploaded files of an injection attempt, built from its description in the suite's JSONL.

``{"name": "x.md" | "x.html", "format": "md" | "html", "text": "..."}``: the file's bytes are the text.
``{"name": "x.pdf" | "x.docx", "format": "pdf" | "docx", "paragraphs": [{"text": "...", "hidden": bool}]}``:
one paragraph after another; a hidden one is styled so a reader cannot see it, the way attackers hide
text: in a PDF drawn in white or in invisible render mode (``3 Tr``), in a DOCX as a hidden run or in
white, alternating.  The readers of ``retrieval.readers`` get the bytes as an upload would.
"""

from __future__ import annotations

import io
import textwrap
from typing import Any


def build(document: dict[str, Any]) -> bytes:
    kind = document.get("format") or document["name"].rsplit(".", 1)[-1]
    if kind in ("md", "html", "txt"):
        return document["text"].encode("utf-8")
    paragraphs = [(p["text"], bool(p.get("hidden"))) for p in document["paragraphs"]]
    if kind == "pdf":
        return pdf(paragraphs)
    if kind == "docx":
        return docx(paragraphs)
    raise ValueError(f"{document['name']}: unknown format {kind!r}")


def _pdf_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def pdf(paragraphs: list[tuple[str, bool]]) -> bytes:
    """A one-or-more-page PDF in Helvetica (Latin-1 text), lines wrapped at 90 characters."""
    lines: list[tuple[str, str]] = []  # (line, "" or the operators that hide it)
    hidden_count = 0
    for text, hidden in paragraphs:
        style = ""
        if hidden:
            hidden_count += 1
            style = "1 1 1 rg" if hidden_count % 2 else "3 Tr"
        lines += [(line, style) for line in textwrap.wrap(text, 90) or [""]]
        lines.append(("", ""))
    pages = [lines[i:i + 48] for i in range(0, len(lines), 48)] or [[]]
    streams = []
    for page in pages:
        ops = ["BT /F1 11 Tf 14 TL 56 760 Td"]
        for line, style in page:
            if style:
                ops.append(f"{style} ({_pdf_string(line)}) Tj 0 0 0 rg 0 Tr T*")
            else:
                ops.append(f"({_pdf_string(line)}) Tj T*")
        ops.append("ET")
        streams.append("\n".join(ops))
    return pdf_pages(streams)


def pdf_pages(streams: list[str]) -> bytes:
    """A PDF with one page per content stream (Latin-1 operators), text in Helvetica as font F1."""
    objects: list[str | None] = ["<< /Type /Catalog /Pages 2 0 R >>", None,
                                 "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"]
    kids = []
    for stream in streams:
        objects.append(f"<< /Length {len(stream.encode('latin-1'))} >>\nstream\n{stream}\nendstream")
        content = len(objects)
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content} 0 R "
                       f"/Resources << /Font << /F1 3 0 R >> >> >>")
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def docx(paragraphs: list[tuple[str, bool]]) -> bytes:
    import docx as python_docx
    from docx.shared import RGBColor

    document = python_docx.Document()
    hidden_count = 0
    for text, hidden in paragraphs:
        run = document.add_paragraph().add_run(text)
        if hidden:
            hidden_count += 1
            if hidden_count % 2:
                run.font.hidden = True
            else:
                run.font.color.rgb = RGBColor(0xFF, 0xFF, 0xFF)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()
