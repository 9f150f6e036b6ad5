"""float32 <-> float16 against numpy's astype on every half and on random float32 bit patterns."""
import numpy as np
import pytest

import qshard

HALF = qshard.QuantParams("float16")


def test_all_halves_to_float32(isa):
    halves = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    got = qshard.dequantize(halves.view(np.float16), HALF, isa=isa)
    assert got.view(np.uint32).tobytes() == halves.view(np.float16).astype(np.float32).view(np.uint32).tobytes()


def test_all_halves_round_trip(isa):
    halves = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    as_float = halves.astype(np.float32)
    back = qshard.quantize(as_float, "float16", isa=isa)[0]
    assert back.view(np.uint16).tobytes() == halves.view(np.uint16).tobytes()


@pytest.mark.parametrize("seed", range(4))
def test_random_float32_bits_to_half(isa, seed):
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 1 << 32, 1 << 20, dtype=np.uint64).astype(np.uint32)
    # Also every float32 within a few ulps of each half and of each rounding midpoint.
    halves = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
    near = halves.view(np.uint32)[:, None] + np.arange(-3, 4, dtype=np.int64)[None, :]
    mid = (halves.view(np.uint32).astype(np.int64) + (1 << 12))[:, None] + np.arange(-2, 3)[None, :]
    x = np.concatenate([bits, near.ravel().astype(np.uint32), mid.ravel().astype(np.uint32)]).view(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        expected = x.astype(np.float16)
    got = qshard.quantize(x, "float16", isa=isa)[0]
    assert got.view(np.uint16).tobytes() == expected.view(np.uint16).tobytes()


def test_specials(isa):
    x = np.array([np.inf, -np.inf, 65504, 65519.99, 65520, -65520, 2.0 ** -25, 2.0 ** -24, 1e-45, -0.0],
                 np.float32)
    got = qshard.quantize(x, "float16", isa=isa)[0].view(np.uint16)
    assert got.tolist() == [0x7C00, 0xFC00, 0x7BFF, 0x7BFF, 0x7C00, 0xFC00, 0x0000, 0x0001, 0x0000, 0x8000]
    # A signalling NaN stays signalling, as numpy keeps it (the F16C instruction would quiet it).
    snan = np.array([0x7F800001, 0xFF802000, 0x7FC00000], np.uint32).view(np.float32)
    assert qshard.quantize(snan, "float16", isa=isa)[0].view(np.uint16).tolist() == [0x7C01, 0xFC01, 0x7E00]
