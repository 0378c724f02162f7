"""Names, titles and Turkish case endings inside a chat message.

Text-structure rules the language detector (``language``) applies before
weighing evidence: which capitalised words look like a name or title (they
count less), and which tokens are a name or number with a Turkish case ending
after an apostrophe (evidence for Turkish, the name itself none).  Pure
functions of the text; no language model here.
"""

from __future__ import annotations

import re

from .scripts import script_of

CONNECTOR_MAX = 2
"""Lower-case words (of up to 3 letters) between two capitalised ones that still belong to the title."""


def split_names(text: str) -> tuple[str, str]:
    """(body, names) of a cleaned text: capitalised Latin words after the first look like names or titles.

    "Wo finde ich The World According to Paris" is German with an English title
    in it; the title's words count ``language._NAME_WEIGHT`` as much as the others, and
    so do up to two short lower-case words between two of them ("Ghost *in
    the* Shell").  Only for messages of 3+ words with at least one word outside
    such runs.
    """
    tokens = text.split()
    if len(tokens) < 3:
        return text, ""
    named = [i > 0 and t[0].isupper() and script_of(t[0]) == "latin" for i, t in enumerate(tokens)]
    i = 1
    while i < len(tokens):
        j = i
        while j < len(tokens) and not named[j] and tokens[j].isalpha() and tokens[j].islower() and len(tokens[j]) <= 3:
            j += 1
        if j > i and named[i - 1] and j < len(tokens) and named[j] and j - i <= CONNECTOR_MAX:
            named[i:j] = [True] * (j - i)
        i = j + 1 if j > i else i + 1
    body, names = [], []
    for token, is_name in zip(tokens, named):
        (names if is_name else body).append(token)
    if not body or not names:
        return text, ""
    return " ".join(body), " ".join(names)


# Turkish writes case endings after an apostrophe on names, abbreviations and
# numbers ("Spotify'da", "Ali'nin", "30'a", "SC'de"); no other language here does.
_TURKISH_SUFFIX = re.compile(
    r"(?:[yn]?[iıuü]|[yn]?[ae]|n?[dt][ae]n?|n?[dt][ae]ki|n?[iıuü]n|y?l[ae]|l[ae]r[a-zçğıöşü]*|[dt][iıuü]r)")
_ELISIONS = frozenset("c d j l m n s t qu all bell coll dall dell nell quell quest sant sull".split())


def turkish_suffixes(text: str) -> tuple[int, str]:
    """(count, rest): tokens of ``text`` (raw, before cleaning) that are a name or number with a Turkish
    ending, and the text without them (the name itself is no evidence of any language).  Chat often writes
    names in lower case ("istanbul'da"), so a lower-case word of 3+ letters counts too."""
    count, rest = 0, []
    for token in text.replace("\u2019", "'").split():
        stem, _, suffix = token.strip(".,!?;:()\"").rpartition("'")
        written_as_name = stem[0].isupper() or stem[0].isdigit() if stem else False
        lower_name = len(stem) >= 3 and stem.isalpha() and not stem.lower().endswith("qu")  # "istanbul'da", not "jusqu'a"
        if ((len(stem) >= 2 or stem.isdigit()) and (written_as_name or lower_name) and stem.lower() not in _ELISIONS
                and _TURKISH_SUFFIX.fullmatch(suffix.lower())):
            count += 1
        else:
            rest.append(token)
    return count, " ".join(rest)
