"""The int8 dot-product kernel (``q4kernel``) over torch's packed 4-bit weights: built on this machine, as
precise as torch's own kernel, a row's result the same alone or in a batch, and torch's kernel where it
cannot be built."""

from __future__ import annotations

import shutil

import pytest
import torch

from assistant.generation import q4kernel
from assistant.generation.cpu import cpu_flags
from assistant.generation.int4 import GROUP, Weight, kernel_block

VNNI = kernel_block() == 64 and "avx512_vnni" in (cpu_flags() or ()) and shutil.which("cc") is not None
needs_kernel = pytest.mark.skipif(not VNNI, reason="the kernel needs AVX-512 VNNI and a C compiler")


def _weight(rows: int, cols: int, seed: int) -> Weight:
    gen = torch.Generator().manual_seed(seed)
    return Weight.from_float(torch.randn(rows, cols, generator=gen) * 0.05, "int4")


def _torch_kernel(w: Weight, x: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten._weight_int4pack_mm_for_cpu(x.bfloat16(), w.packed.reshape(-1, w.in_features // 2),
                                                      GROUP, w.scale_zero).float()


@needs_kernel
def test_the_kernel_is_built_here_and_used_by_the_4bit_weights():
    assert q4kernel.library() is not None
    w = _weight(256, 512, 0)
    x = torch.randn(3, 512)
    assert w._int8_dot()
    assert torch.equal(w(x), q4kernel.mm(x.bfloat16(), w.packed, w.scale_zero, 256))


@needs_kernel
@pytest.mark.parametrize("rows, cols", [(64, 32), (2048, 1536), (1536, 8960), (960, 576)])
def test_as_close_to_the_exact_product_as_torchs_kernel(rows, cols):
    """Both kernels against the product of the same 4-bit weights in float64: the two int8 values a column
    (see q4kernel.c) keep the activation as precise as torch's bf16."""
    w = _weight(rows, cols, 1)
    exact_w = w.dequantize().double()
    for m in (1, 4):
        x = torch.randn(m, cols, generator=torch.Generator().manual_seed(m))
        exact = x.double() @ exact_w.t()
        ours = q4kernel.mm(x, w.packed, w.scale_zero, rows).double()
        theirs = _torch_kernel(w, x).double()
        ours_err = float((ours - exact).norm() / exact.norm())
        theirs_err = float((theirs - exact).norm() / exact.norm())
        assert ours_err <= 1.1 * theirs_err + 1e-4, (ours_err, theirs_err)


@needs_kernel
def test_a_rows_result_is_the_same_alone_and_in_any_batch():
    """Batched decoding and speculative checks compare a row computed with others to the same row alone:
    bit for bit, whatever the batch around it."""
    w = _weight(1024, 1536, 2)
    x = torch.randn(9, 1536) * torch.logspace(-2, 2, 9)[:, None]  # rows of very different sizes
    alone = torch.cat([q4kernel.mm(x[i:i + 1], w.packed, w.scale_zero, 1024) for i in range(9)])
    for batch in (x, x[[4, 0, 8]], x[:2]):
        together = q4kernel.mm(batch, w.packed, w.scale_zero, 1024)
        index = [int((x == row).all(1).nonzero()) for row in batch]
        assert torch.equal(together, alone[index])


@needs_kernel
def test_the_512_bit_products_give_the_256_bit_ones_bit_for_bit(tmp_path):
    """Where the CPU has AVX-512 VBMI the kernel is built with 512-bit products (other byte permutes, sums
    in another register order); built with -DQ4_NARROW it keeps the 256-bit ones.  Same bits out."""
    wide = q4kernel.library()
    if wide.q4_features() < 2:
        pytest.skip("this CPU builds the 256-bit products only")
    narrow_path = tmp_path / "narrow.so"
    q4kernel.build(narrow_path, q4kernel._compiler(), ("-DQ4_NARROW",))
    narrow = q4kernel._load(narrow_path)
    assert narrow.q4_features() == 1
    for rows, cols, m, seed in ((64, 32, 1, 5), (2048, 1536, 4, 6), (1536, 8960, 3, 7), (960, 576, 9, 8)):
        w = _weight(rows, cols, seed)
        x = torch.randn(m, cols, generator=torch.Generator().manual_seed(seed)) * 3
        assert torch.equal(q4kernel._mm(wide, x, w.packed, w.scale_zero, rows),
                           q4kernel._mm(narrow, x, w.packed, w.scale_zero, rows))


@needs_kernel
def test_zero_and_extreme_activations():
    w = _weight(128, 256, 3)
    x = torch.zeros(2, 256)
    x[1, 7] = 3e4  # one huge value in a group of zeros
    out = q4kernel.mm(x, w.packed, w.scale_zero, 128)
    assert torch.equal(out[0], torch.zeros(128))
    assert torch.allclose(out[1], _torch_kernel(w, x)[1], rtol=0.01, atol=1.0)


@needs_kernel
def test_a_damaged_build_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("ASSISTANT_HOME", str(tmp_path))
    target = q4kernel._target(q4kernel._compiler())
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not a shared library")
    q4kernel.library.cache_clear()
    try:
        assert q4kernel.library() is not None
        assert target.read_bytes()[:4] == b"\x7fELF"
    finally:
        q4kernel.library.cache_clear()


def test_without_a_compiler_the_weights_use_torchs_kernel(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("ASSISTANT_HOME", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    q4kernel.library.cache_clear()
    try:
        with caplog.at_level("INFO"):
            lib = q4kernel.library()
        assert lib is None
        if kernel_block() == 64:  # a CPU whose layout the kernel reads: the log says why it is not used
            assert "torch's 4-bit kernel" in caplog.text
        w = _weight(128, 256, 4)
        x = torch.randn(2, 256)
        assert not w._int8_dot()
        assert torch.equal(w(x).float(), _torch_kernel(w, x))
    finally:
        q4kernel.library.cache_clear()


def test_the_switch_turns_it_off(monkeypatch):
    monkeypatch.setenv("ASSISTANT_INT8_DOT", "off")
    q4kernel.library.cache_clear()
    try:
        assert q4kernel.library() is None
    finally:
        q4kernel.library.cache_clear()


def _reference_attention(q, keys, values, stop, window, scale):
    """float64 attention of one row q (heads, dim) over keys / values (kv, cap, dim), positions before stop."""
    first = max(0, stop - window) if window else 0
    kv, heads = keys.shape[0], q.shape[0]
    k = keys[:, first:stop].double().repeat_interleave(heads // kv, 0)  # (heads, L, dim)
    v = values[:, first:stop].double().repeat_interleave(heads // kv, 0)
    probs = torch.softmax(torch.einsum("hd,hld->hl", q.double(), k) * scale, -1)
    return torch.einsum("hl,hld->hd", probs, v)


@needs_kernel
@pytest.mark.parametrize("heads, kv, dim", [(12, 2, 128), (4, 1, 256), (9, 3, 64), (16, 1, 32)])
def test_one_query_attention_over_each_rows_own_cache(heads, kv, dim):
    """``Rows.attend``: rows of different lengths and caches of different capacities, with and without a
    sliding window, as close to float64 as bf16 output allows and closer than torch's bf16 products; a
    row's result is bit for bit the same alone or among others."""
    gen = torch.Generator().manual_seed(heads * dim)
    layers, stops, caps = 3, [1, 17, 300, 45], [64, 32, 320, 64]
    keys = [torch.randn(layers, kv, c, dim, generator=gen).bfloat16() for c in caps]
    values = [torch.randn(layers, kv, c, dim, generator=gen).bfloat16() for c in caps]
    q = (torch.randn(len(stops), heads, dim, generator=gen) * 2).bfloat16()
    scale = dim ** -0.5
    rows = q4kernel.Rows(keys, values, stops)
    for layer, window in ((0, 0), (2, 0), (1, 16)):
        out = rows.attend(q, layer, window, scale)
        assert out.dtype == torch.bfloat16 and out.shape == q.shape
        for r, stop in enumerate(stops):
            exact = _reference_attention(q[r].float(), keys[r][layer], values[r][layer], stop, window, scale)
            ours = float((out[r].double() - exact).norm() / exact.norm())
            first = max(0, stop - window) if window else 0
            k, v = keys[r][layer, :, first:stop], values[r][layer, :, first:stop]
            g = q[r].reshape(kv, heads // kv, dim)
            probs = torch.softmax(torch.bmm(k, g.transpose(1, 2)).transpose(1, 2).float() * scale, -1).bfloat16()
            theirs = float((torch.bmm(probs, v).reshape(heads, dim).double() - exact).norm() / exact.norm())
            assert ours < 0.004 and ours <= theirs + 1e-4, (ours, theirs)
            alone = q4kernel.Rows([keys[r]], [values[r]], [stop]).attend(q[r:r + 1], layer, window, scale)
            assert torch.equal(alone[0], out[r])


@needs_kernel
def test_a_prompts_weights_are_de_quantised_to_torchs_bits_in_one_pass(monkeypatch):
    """``Weight.dequantize_t`` (a prompt's products read the matrix as bf16, a tile of rows at a time)
    through the kernel library gives torch's three-pass result bit for bit, for whole matrices and tiles."""
    w = _weight(1024, 1536, 9)
    tiles = ((0, 1024), (64, 512), (960, 1024))
    ours = [w.dequantize_t(a, b) for a, b in tiles]
    monkeypatch.setattr(q4kernel, "ENABLED", False)  # torch's path
    assert not w._int8_dot()
    theirs = [w.dequantize_t(a, b) for a, b in tiles]
    for a, b, (start, stop) in zip(ours, theirs, tiles):
        assert a.dtype == torch.bfloat16 and a.shape == (1536, stop - start)
        assert torch.equal(a, b)
    assert torch.allclose(theirs[0].float().t(), w.dequantize().float(), atol=1e-2)
