"""The language detector's tables in files (``assistant.understanding.language_tables``): the same values as
the packages' own, read a row at a time, rebuilt when damaged, kept in memory where the home is read-only."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from assistant.understanding import language_tables as lt


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(tables read from the files, the arrays and metadata they were written from, the home)."""
    home = tmp_path_factory.mktemp("home")
    tables = lt.load(home)
    arrays, meta = lt._build()
    return tables, arrays, meta, home


def test_the_ngram_table_holds_langdetects_smoothed_log_probabilities(built):
    from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

    tables, _, _, _ = built
    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    assert tables.languages == tuple(factory.langlist)
    grams = sorted(factory.word_lang_prob_map)[::997] + ["the", " th", "ich", "на", "的"]
    rows = tables.ngram_rows(grams)
    assert (rows >= 0).all()
    expected = np.log(np.array([factory.word_lang_prob_map[g] for g in grams]) + 0.5 / 10000.0)
    assert np.array_equal(tables.ngram_loglik.rows(rows.tolist()), expected)  # bit for bit
    assert (tables.ngram_rows(["qqqzx", ""]) == -1).all()


def test_every_words_entries_are_found_across_the_blocks_the_index_splits(built):
    """Word look-up goes through every 256th key in memory, then one block read from the file; a word in
    many lists (its entries side by side) can straddle two blocks."""
    tables, arrays, _, _ = built
    keys = arrays["word_keys"]
    assert np.array_equal(tables.word_keys.whole(), keys)
    import wordfreq

    words = ["the", "no", "a", "de", "la", "passwort", "contraseña", "пароль", "in"]
    words += wordfreq.top_n_list("en", 400)[::40] + wordfreq.top_n_list("fr", 400)[::40]
    for word in words:
        h = np.uint64(lt.key(word))
        lo, hi = np.searchsorted(keys, h, side="left"), np.searchsorted(keys, h, side="right")
        cols, freqs = tables.word_entries(word)
        assert hi > lo, word  # every one of these words is in some list
        assert np.array_equal(cols, arrays["word_lang"][lo:hi]) and np.array_equal(freqs, arrays["word_log10"][lo:hi])
    # keys whose entries straddle a block boundary, and keys at the boundaries
    boundaries = np.arange(lt._STRIDE, len(keys), lt._STRIDE)
    straddling = keys[boundaries[keys[boundaries] == keys[boundaries - 1]]]
    assert len(straddling)  # a word in several lists, its entries split by the index
    for h in list(straddling[:50]) + [keys[0], keys[lt._STRIDE - 1], keys[lt._STRIDE], keys[-1]]:
        lo, hi = np.searchsorted(keys, h, side="left"), np.searchsorted(keys, h, side="right")
        cols, freqs = tables.key_entries(h)
        assert hi - lo >= 1 and np.array_equal(cols, arrays["word_lang"][lo:hi])
        assert np.array_equal(freqs, arrays["word_log10"][lo:hi])
    assert len(tables.word_entries("zzqxjkwv")[0]) == 0


def test_detection_is_the_same_from_the_files_and_from_memory(built, tmp_path, monkeypatch):
    from assistant.understanding import language

    tables, arrays, meta, _ = built
    texts = ["I forgot my password", "Ich habe mein Passwort vergessen", "Olvidé mi contraseña", "ok", "danke!",
             "Я забыл пароль", "設定を変更", "谢谢", "Spotify'da çal", "Finde The House of the Yellow Carpet"]
    results = []
    for source in (tables, lt._in_memory(arrays, meta)):
        monkeypatch.setattr(language, "tables", lambda source=source: source)
        language._profiles.cache_clear()
        results.append([(r.language, r.confidence) for r in map(language.detect, texts)])
    language._profiles.cache_clear()
    assert results[0] == results[1]
    assert [lang for lang, _ in results[0][:3]] == ["en", "de", "es"]


def test_a_damaged_table_is_built_again_in_a_child_process(built, tmp_path, caplog, monkeypatch):
    _, _, _, home = built
    import shutil

    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    folder = lt.folder_for(copy)
    damaged = folder / "ngram_loglik.npy"
    damaged.write_bytes(damaged.read_bytes()[:-100])  # a write cut short
    monkeypatch.setattr(lt, "_build", lambda: pytest.fail("built in this process, not in a child"))
    with caplog.at_level(logging.WARNING):
        again = lt.load(copy)
    assert "cannot be read" in caplog.text and "building them again" in caplog.text
    assert again.ngram_loglik.shape == (len(again.ngram_keys), len(again.languages))
    assert lt.load(copy).ngram_loglik.shape == again.ngram_loglik.shape  # whole again on disk


def test_a_home_that_cannot_be_written_keeps_the_tables_in_memory(tmp_path, monkeypatch, caplog):
    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(lt, "_write", refuse)
    with caplog.at_level(logging.WARNING):
        tables = lt.load(tmp_path, in_child=False)
    assert "kept in memory" in caplog.text
    assert not lt.folder_for(tmp_path).exists()
    rows = tables.ngram_rows(["the"])
    assert rows[0] >= 0 and tables.ngram_loglik.rows(rows.tolist()).shape == (1, len(tables.languages))


def test_rows_are_read_the_same_without_pread(built, monkeypatch):
    """Where the platform has no ``os.pread`` (Windows), a seek and a read under a lock."""
    import os

    tables, arrays, _, _ = built
    rows = tables.ngram_rows(["the", "ich", "на"]).tolist()
    with_pread = tables.ngram_loglik.rows(rows)
    monkeypatch.delattr(os, "pread")
    assert np.array_equal(tables.ngram_loglik.rows(rows), with_pread)
    assert np.array_equal(tables.word_keys.span(5, 9), arrays["word_keys"][5:9])
