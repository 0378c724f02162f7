"""Untrusted text (model output, document text, user messages) → what a page
may show: HTML that fetches nothing and runs nothing.

The one place where answers become display text.  Every surface that shows
model output or document text (chat answers, the sources panel, the admin
conversation view, the Explain panel) goes through these functions:

- ``render_markdown`` — an answer, Markdown kept (bold, lists, tables, code,
  links), parsed once here with markdown-it (CommonMark) and returned as HTML.
  Raw HTML is shown as text (never live: no ``<img>``, ``<iframe>``, ``style``
  or event attributes can come out of it); links carry ``rel="noopener
  noreferrer nofollow"`` and open in a new tab; images are *not* loaded but
  shown as a link with their full address, unless their origin is in the
  configured ``allowed_image_origins``; bare ``http(s)://`` addresses become
  such links too.
- ``escape_html`` — plain text inside HTML.
- ``literal_markdown`` — plain text inside a Markdown component (Gradio's
  ``gr.Markdown``): every character shown as written, nothing becomes a link,
  image or tag.

The callers show the HTML where Gradio inserts it as it is (``gr.Chatbot`` with
``render_markdown=False``, ``gr.HTML``), so nothing parses it a second time.
Knows nothing about Gradio, the engine or HTTP; the server's
Content-Security-Policy is the second line behind this one.
"""

from __future__ import annotations

import functools
import html
import re
from typing import Any, Sequence
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markdown_it.token import Token

LINK_REL = "noopener noreferrer nofollow"
_BARE_URL = re.compile(r"https?://[^\s<>\"'`]+", re.I)
URL_TRAILING = ".,;:!?'\")]}*_~"
"""Punctuation after a bare address that ends the sentence, not the address."""
_ASCII_PUNCT = re.compile(r"([!\"#$%'()*+,\-./:;=?@\[\\\]^_`{|}~])")


def escape_html(text: str) -> str:
    """``text`` as the text of an HTML element (quotes stay as they are: this is not for attributes)."""
    return html.escape(text, quote=False)


def escape_attr(text: str) -> str:
    return html.escape(text, quote=True)


def literal_markdown(text: str) -> str:
    """``text`` for a Markdown component, shown exactly as written: ``<``, ``>`` and ``&`` become
    entities, every other ASCII punctuation mark is backslash-escaped, so no tag, link, image,
    bare-address autolink, emphasis or code span can form.  White space is left alone."""
    text = html.escape(text, quote=False)
    parts = re.split(r"(&(?:lt|gt|amp);)", text)  # the entities must keep their own & and ;
    return "".join(p if i % 2 else _ASCII_PUNCT.sub(r"\\\1", p) for i, p in enumerate(parts))


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of an absolute http(s) address, lower case; "" otherwise."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return ""
    return f"{parts.scheme}://{parts.netloc}".lower()


def render_markdown(text: str, image_origins: Sequence[str] = ()) -> str:
    """An untrusted Markdown answer as safe HTML (see the module docstring); images load only from
    ``image_origins`` (``https://cdn.example.com``, compared scheme, host and port)."""
    if not text:
        return ""
    return _parser(tuple(sorted({o.rstrip("/").lower() for o in image_origins}))).render(text)


# -- the parser ------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _parser(image_origins: tuple[str, ...]) -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "breaks": True, "linkify": False})
    md.enable(["table", "strikethrough"])
    md.core.ruler.push("bare_urls", functools.partial(_bare_urls, md))
    md.core.ruler.push("mark_images_in_links", _mark_images_in_links)
    md.add_render_rule("link_open", _link_open)

    def image(self: Any, tokens: list[Token], idx: int, options: Any, env: Any) -> str:
        return _image(image_origins, self, tokens, idx, options, env)

    md.add_render_rule("image", image)
    return md


def _link_open(self: Any, tokens: list[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    token.attrSet("rel", LINK_REL)
    token.attrSet("target", "_blank")
    if not token.attrGet("title"):
        token.attrSet("title", str(token.attrGet("href") or ""))
    return self.renderToken(tokens, idx, options, env)


def _image(image_origins: tuple[str, ...], self: Any, tokens: list[Token], idx: int, options: Any,
           env: Any) -> str:
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    alt = self.renderInlineAsText(token.children or [], options, env).strip()
    if origin_of(src) and origin_of(src) in image_origins:
        return (f'<img src="{escape_attr(src)}" alt="{escape_attr(alt)}" loading="lazy" '
                'referrerpolicy="no-referrer">')
    shown = "(embedded in the text)" if src.lower().startswith("data:") else src
    label = f"[image{': ' + escape_html(alt) if alt else ''}] {escape_html(shown)}"
    note = "Image not loaded: it is not from an allowed image origin"
    if token.meta.get("in_link") or not origin_of(src):
        return f'<span class="blocked-image" title="{note}">{label}</span>'
    return (f'<a class="blocked-image" href="{escape_attr(src)}" rel="{LINK_REL}" target="_blank" '
            f'title="{note}">{label}</a>')


def _mark_images_in_links(state: Any) -> None:
    """An image inside a link's text is shown as text, not as a second (nested) link."""
    for block in state.tokens:
        depth = 0
        for token in block.children or []:
            depth += {"link_open": 1, "link_close": -1}.get(token.type, 0)
            if token.type == "image" and depth > 0:
                token.meta["in_link"] = True


def _bare_urls(md: MarkdownIt, state: Any) -> None:
    """Turn ``http(s)://…`` written as plain text (outside links and code) into links."""
    for block in state.tokens:
        if block.type != "inline" or not block.children:
            continue
        out: list[Token] = []
        depth = 0
        for token in block.children:
            depth += {"link_open": 1, "link_close": -1}.get(token.type, 0)
            if token.type != "text" or depth > 0 or "://" not in token.content:
                out.append(token)
                continue
            out.extend(_split_urls(md, token))
        block.children = out


def _split_urls(md: MarkdownIt, token: Token) -> list[Token]:
    out: list[Token] = []
    text, pos = token.content, 0
    for match in _BARE_URL.finditer(text):
        url = _trim(match.group(0))
        href = md.normalizeLink(url)
        if not md.validateLink(href):
            continue
        start, end = match.start(), match.start() + len(url)
        if start > pos:
            out.append(_text(text[pos:start], token))
        link = Token("link_open", "a", 1, attrs={"href": href}, level=token.level, markup="linkify",
                     info="auto")
        out += [link, _text(url, token), Token("link_close", "a", -1, level=token.level, markup="linkify",
                                               info="auto")]
        pos = end
    if pos < len(text):
        out.append(_text(text[pos:], token))
    return out or [token]


def _trim(url: str) -> str:
    """Drop trailing punctuation that belongs to the sentence (a ``)`` only when unbalanced)."""
    while url and url[-1] in URL_TRAILING:
        if url[-1] == ")" and url.count("(") >= url.count(")"):
            break
        url = url[:-1]
    return url


def _text(content: str, like: Token) -> Token:
    return Token("text", "", 0, content=content, level=like.level)
