"""Fusion and relevance-floor variants on xquad-dev, tuned on one half of the questions, checked on the other.

    python -m bench.fusion_sweep collect        # scores every query against every chunk (e5; ~10 min on 2 cores)
    python -m bench.fusion_sweep tune           # R@1 of the fusion variants and the floors, even question positions
    python -m bench.fusion_sweep report         # the same on the odd positions

How ``retrieval.fusion.fuse``'s rescaling from the embedder's baseline and ``lexical_confidence_coverage``
were chosen (2026-12-04): the variants re-implement the fusion on cached scores (cosine, BM25 and the
share of IDF mass of each query against every chunk), same-language, cross-language (X -> en, en -> zh),
and xSID off-topic requests for the floors.  The cache is /tmp/fx/scores.pkl.
"""
import pickle
import sys
from pathlib import Path

import numpy as np

CACHE = Path("/tmp/fx/scores.pkl")


def collect() -> None:
    import bench.retrieval as br
    from retrieval.embedding import load_embedder

    emb = load_embedder(None)
    cached = br.CachedEmbedder(emb, {})
    indexes, paras = {}, {}
    for lang in br.LANGUAGES:
        paragraphs, _ = br.load_xquad(lang)
        idx = br._index_of(lang, paragraphs, cached)
        indexes[lang] = idx
        paras[lang] = np.array([int(idx._hit(i, 0, 0, 0).source.rsplit(":", 1)[1]) for i in range(len(idx.chunks))])
        print("indexed", lang, flush=True)

    def score(idx, texts):
        vecs = cached.embed_query(texts, batch_size=128)
        rows = np.arange(len(idx.chunks))
        return [((idx.embeddings @ v).astype(np.float32), idx._lexical.scores(t).astype(np.float32),
                 idx._lexical.coverage(t, rows).astype(np.float32)) for t, v in zip(texts, vecs)]

    data = {"paras": paras, "same": {}, "off": {}, "cross": {}}
    for lang in br.LANGUAGES:
        _, qs = br.load_xquad(lang)
        data["same"][lang] = (score(indexes[lang], [q for q, _ in qs]), [p for _, p in qs])
        off = br.load_xsid(lang)
        if off:
            data["off"][lang] = score(indexes[lang], off)
        print("scored", lang, flush=True)
    for ql, pl in [(l, "en") for l in br.LANGUAGES if l != "en"] + [("en", "zh")]:
        _, qs = br.load_xquad(ql)
        data["cross"][(ql, pl)] = (score(indexes[pl], [q for q, _ in qs]), [p for _, p in qs])
        print("cross", ql, pl, flush=True)
    pickle.dump(data, open(CACHE, "wb"))
    print("saved")


def analyze(half: str) -> None:
    data = pickle.load(open(CACHE, "rb"))
    paras = data["paras"]
    BASE = 0.75

    start = 0 if half == "tune" else 1

    def fuse_current(d, b, c, w=0.5):
        dn = np.clip(d, 0, None) / max(d.max(), 1e-9)
        return dn if b.max() <= 0 else w * dn + (1 - w) * b / b.max()

    def fuse_calib(d, b, c, w=0.5, base=BASE, conf_k=None):
        dn = np.clip((d - base) / max(d.max() - base, 1e-6), 0, 1)
        if b.max() <= 0:
            return dn
        bn = b / b.max()
        if conf_k:
            bn = bn * min(1.0, float(c[np.argmax(b)]) / conf_k)
        return w * dn + (1 - w) * bn

    def fuse_calib_spread(d, b, c, w=0.5):
        # dense rescaled by the query's own spread: (d - median) / (max - median)
        med = float(np.median(d))
        dn = np.clip((d - med) / max(d.max() - med, 1e-6), 0, 1)
        return dn if b.max() <= 0 else w * dn + (1 - w) * b / b.max()

    F = {"dense": lambda d, b, c: d, "bm25": lambda d, b, c: b, "current": fuse_current,
         "calib": fuse_calib, "calib w.6": lambda d, b, c: fuse_calib(d, b, c, w=0.6),
         "calib w.7": lambda d, b, c: fuse_calib(d, b, c, w=0.7),
         "calib conf.5": lambda d, b, c: fuse_calib(d, b, c, conf_k=0.5),
         "calib w.6 conf.5": lambda d, b, c: fuse_calib(d, b, c, w=0.6, conf_k=0.5),
         "spread": fuse_calib_spread, "spread w.6": lambda d, b, c: fuse_calib_spread(d, b, c, w=0.6)}

    def r1(recs, golds, para, f):
        sel = range(start, len(recs), 2)
        return np.mean([para[int(np.argmax(f(*recs[i])))] == golds[i] for i in sel])

    print(f"## fusion R@1 ({half} half)\n")
    print("| pair | " + " | ".join(F) + " |"); print("|---" * (len(F) + 1) + "|")
    cols = {k: [] for k in F}
    for lang, (recs, golds) in data["same"].items():
        v = {k: r1(recs, golds, paras[lang], f) for k, f in F.items()}
        [cols[k].append(v[k]) for k in F]
        print(f"| {lang} | " + " | ".join(f"{v[k]:.3f}" for k in F) + " |")
    print("| mean same | " + " | ".join(f"{np.mean(cols[k]):.3f}" for k in F) + " |")
    cols = {k: [] for k in F}
    for (ql, pl), (recs, golds) in data["cross"].items():
        v = {k: r1(recs, golds, paras[pl], f) for k, f in F.items()}
        [cols[k].append(v[k]) for k in F]
        print(f"| {ql}->{pl} | " + " | ".join(f"{v[k]:.3f}" for k in F) + " |")
    print("| mean cross | " + " | ".join(f"{np.mean(cols[k]):.3f}" for k in F) + " |")

    # floors: a query is answered when its best candidate passes
    def floor_current(d, b, c):
        cal = (d - BASE) / (1 - BASE)
        rel = 0.5 * np.clip(cal, 0, 1) + 0.5 * c
        return bool(((rel >= 0.25) | (cal >= 0.30)).any())

    def floor_no_dense(d, b, c):
        cal = (d - BASE) / (1 - BASE)
        return bool((0.5 * np.clip(cal, 0, 1) + 0.5 * c >= 0.25).any())

    def floor_rel(t, lex=0.25):
        def f(d, b, c):
            med = float(np.median(d))
            rel = (d - med) / (1 - med)
            cal = (d - BASE) / (1 - BASE)
            return bool(((0.5 * np.clip(cal, 0, 1) + 0.5 * c >= lex) & (rel >= t * 0.5) | (rel >= t)).any())
        return f

    def floor_rel_only(t):
        def f(d, b, c):
            med = float(np.median(d))
            return bool(((d - med) / (1 - med) >= t).any())
        return f

    FL = {"current": floor_current, "no dense floor": floor_no_dense,
          **{f"rel {t}": floor_rel(t) for t in (0.3, 0.4, 0.5)},
          **{f"rel-only {t}": floor_rel_only(t) for t in (0.3, 0.4, 0.5)}}
    print(f"\n## floor: questions answered / off-topic rejected ({half} half)\n")
    print("| lang | " + " | ".join(FL) + " |"); print("|---" * (len(FL) + 1) + "|")
    for lang, (recs, golds) in data["same"].items():
        sel = range(start, len(recs), 2)
        cells = []
        off = data["off"].get(lang)
        for k, f in FL.items():
            ans = np.mean([f(*recs[i]) for i in sel])
            rej = np.mean([not f(*off[i]) for i in range(start, len(off), 2)]) if off else float("nan")
            cells.append(f"{ans:.3f} / {rej:.3f}")
        print(f"| {lang} | " + " | ".join(cells) + " |")


def floors(half: str) -> None:
    """The cosine-alone rule with and without a required spread above the query's median cosine."""
    data = pickle.load(open(CACHE, "rb"))
    BASE = 0.75
    def mk(dense_t=0.30, spread_t=None, lex_spread=None):
        def f(d, b, c):
            cal = (d - BASE) / (1 - BASE)
            med = float(np.median(d)); rel = (d - med) / (1 - med)
            lex = 0.5 * np.clip(cal, 0, 1) + 0.5 * c >= 0.25
            if lex_spread is not None: lex &= rel >= lex_spread
            dn = cal >= dense_t
            if spread_t is not None: dn &= rel >= spread_t
            return bool((lex | dn).any())
        return f
    V = {"current": mk(), "dense rule & spread .2": mk(spread_t=0.2), "dense rule & spread .25": mk(spread_t=0.25),
         "dense rule & spread .3": mk(spread_t=0.3), "both & spread .15/.3": mk(spread_t=0.3, lex_spread=0.15),
         "lex & spread .1, dense & .25": mk(spread_t=0.25, lex_spread=0.1)}
    for half, start in ((half, 0 if half == "tune" else 1),):
        print(f"\n{half}: answered / off-topic rejected\n| lang | " + " | ".join(V) + " |\n|---" * 1 + "|---" * len(V) + "|")
        tot = {k: [] for k in V}
        for lang, (recs, golds) in data["same"].items():
            off = data["off"].get(lang); cells = []
            for k, f in V.items():
                ans = np.mean([f(*recs[i]) for i in range(start, len(recs), 2)])
                rej = np.mean([not f(*off[i]) for i in range(start, len(off), 2)]) if off else float("nan")
                tot[k].append((ans, rej)); cells.append(f"{ans:.3f} / {rej:.3f}")
            print(f"| {lang} | " + " | ".join(cells) + " |")
        print("| mean | " + " | ".join(f"{np.mean([a for a, _ in tot[k]]):.3f} / {np.nanmean([r for _, r in tot[k]]):.3f}" for k in V) + " |")


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "tune"
    if what == "collect" or not CACHE.is_file():
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        collect()
    if what != "collect":
        analyze(what)
        floors(what)
