"""The C++ chunk loop (ShardWriter.append_file, minmax_file): a tensor read from file ranges gives
the serial kernels' bytes for every stored form, length, split and thread count; bad files raise."""
import os
import threading

import numpy as np
import pytest

import qshard
from qshard import _core
from conftest import ISAS

CHUNK = 1 << 15        # kFileChunkElements
SPLIT = 4 * CHUNK      # a worker's minimum share: two workers from 2 * SPLIT elements
# 0, 1, around the chunk size, around the thread split, and several chunks plus a tail.
SIZES = [0, 1, 2, 7, CHUNK - 1, CHUNK, CHUNK + 1, 2 * SPLIT - 1, 2 * SPLIT, 2 * SPLIT + 1, 5 * SPLIT + 12345]
FORMS = ["float32", "float16", "bfloat16", "float64", "uint8", "uint16"]
TARGETS = ["uint8", "uint16", "float16"]
CODES = {"uint8": (-1.5, 3.0 / 255), "uint16": (-2.25, 5.0 / 65535)}  # (min, scale) of stored codes
BOUND = 3 * CHUNK * 4  # a small read buffer for the tests: three float32 chunks
ITEM = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "uint8": 1, "uint16": 2}


@pytest.fixture
def read_buffer():
    """Set the read buffer (bytes of a tensor read once) for one test; restored afterwards."""
    before = _core.get_read_buffer()
    yield _core.set_read_buffer
    _core.set_read_buffer(before)


def stored_and_values(form, n, seed=0):
    """(bytes as stored, the float32 values they mean) for a stored form."""
    rng = np.random.default_rng(seed)
    if form in CODES:
        codes = rng.integers(0, 256 if form == "uint8" else 65536, n).astype(form)
        mn, scale = CODES[form]
        values = qshard.dequantize(codes, qshard.QuantParams(form, mn, scale), isa="serial")
        return codes.tobytes(), values
    x = rng.standard_normal(n) * 3
    if form == "bfloat16":
        bits = (x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
        return bits.tobytes(), (bits.astype(np.uint32) << 16).view(np.float32)
    stored = x.astype(form)
    return stored.tobytes(), stored.astype(np.float32)


def reference_codes(values, target):
    """What the serial kernels make of the whole tensor, and (min, scale)."""
    if target == "float16":
        return qshard.float16_bits(values, isa="serial").tobytes(), (0.0, 1.0)
    if values.size == 0:
        return b"", (0.0, 1.0)
    codes, params = qshard.quantize(values, target, isa="serial")
    return codes.tobytes(), (params.min, params.scale)


def write_pieces(folder, data, cuts, prefix=b"xyz"):
    """data split at byte offsets `cuts` into files (each after a prefix): the pieces list."""
    pieces, bounds = [], [0, *cuts, len(data)]
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        path = folder / f"piece{i}.bin"
        path.write_bytes(prefix + data[a:b] + b"tail")
        pieces.append((str(path), len(prefix), b - a))
    return pieces


def append(folder, pieces, form, n, target, *, lead=0, shard_size=1 << 20, codes=(0.0, 1.0), **kwargs):
    """Run append_file into a fresh writer after `lead` bytes; (result, the tensor's written bytes)."""
    out = folder / f"out-{len(os.listdir(folder))}"
    out.mkdir()
    nbytes = n * (1 if target == "uint8" else 2)
    writer = _core.ShardWriter(str(out), 1, lead + nbytes, shard_size)
    writer.append(np.full(lead, 7, np.uint8))
    result = writer.append_file(pieces, form, n, target, codes[0], codes[1], **kwargs)
    if not result[0]:
        assert writer.written == lead  # refused before a byte of the tensor
        writer.abort()
        return result, None
    writer.finish()
    data = b"".join((out / name).read_bytes() for name in writer.names)
    assert data[:lead] == b"\x07" * lead
    return result, data[lead:]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("n", SIZES)
def test_every_form_and_size_gives_the_serial_bytes(tmp_path, form, n):
    data, values = stored_and_values(form, n, seed=n)
    pieces = write_pieces(tmp_path, data, [])
    codes = CODES.get(form, (0.0, 1.0))
    for target in TARGETS:
        want, (mn, scale) = reference_codes(values, target)
        for threads in (1, 2):
            (written, rng, got_min, got_scale), got = append(tmp_path, pieces, form, n, target, codes=codes,
                                                              threads=threads)
            assert written and got == want, (target, threads)
            if target != "float16":
                assert (got_min, got_scale) == (mn, scale)
            assert rng == _core.minmax(values)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("n", [1000, 2 * SPLIT + 333])  # read once (one chunk) / read twice
def test_pieces_shards_and_odd_offsets(tmp_path, isa, target, n):
    # A tensor split over files mid-element (as tfjs shards cut it), written after an odd lead
    # into small shards, so codes straddle shards and two-byte codes sit at odd addresses.
    data, values = stored_and_values("float32", n, seed=3)
    pieces = write_pieces(tmp_path, data, [1, 1001, 1001, min(600003, len(data) - 5)])  # (one piece is empty)
    want, _ = reference_codes(values, target)
    for lead, shard_size in ((0, 1 << 20), (1, 1001), (3, 65537)):
        _, got = append(tmp_path, pieces, "float32", n, target, lead=lead, shard_size=shard_size, isa=isa, threads=2)
        assert got == want, (lead, shard_size)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("form", FORMS)
def test_tensors_around_the_read_buffer_give_the_serial_bytes(tmp_path, read_buffer, form, isa):
    # Read once (fits), just over (the kept chunks plus a re-read tail), much bigger (kept prefix,
    # the rest read twice, split over two workers), and no buffer at all (every chunk read twice).
    read_buffer(BOUND)
    fit = BOUND // ITEM[form]
    for n, budget in ((fit - 1, BOUND), (fit, BOUND), (fit + 1, BOUND), (fit + CHUNK + 3, BOUND),
                      (2 * SPLIT + 77, BOUND), (2 * SPLIT + 77, 0), (CHUNK + 1, CHUNK * ITEM[form] - 1)):
        read_buffer(budget)
        data, values = stored_and_values(form, n, seed=n)
        pieces = write_pieces(tmp_path, data, [len(data) // 3])
        for target in TARGETS:
            want, (mn, scale) = reference_codes(values, target)
            for threads in (1, 2):
                (written, rng, got_min, got_scale), got = append(
                    tmp_path, pieces, form, n, target, codes=CODES.get(form, (0.0, 1.0)), lead=1, shard_size=65537,
                    isa=isa, threads=threads)
                assert written and got == want, (n, budget, target, threads)
                assert rng == _core.minmax(values)
                if target != "float16":
                    assert (got_min, got_scale) == (mn, scale)


def test_the_read_buffer_setting(read_buffer):
    assert _core.get_read_buffer() == 16 << 20  # the default (kReadBufferBytes)
    read_buffer(12345)
    assert _core.get_read_buffer() == 12345


def test_calls_at_once_each_get_their_own_buffer(tmp_path):
    # Two writers fed from two Python threads (the GIL is released): the read buffer kept between
    # calls is in use by one of them, so the other must work in memory of its own.
    inputs = []
    for i in range(2):
        data, values = stored_and_values("float32", 2 * SPLIT + i, seed=10 + i)
        path = tmp_path / f"in{i}.bin"
        path.write_bytes(data)
        inputs.append(([(str(path), 0, len(data))], values, reference_codes(values, "uint8")[0]))
    results, errors = {}, []

    def run(i):
        try:
            pieces, values, _ = inputs[i]
            out = tmp_path / f"out{i}"
            out.mkdir()
            writer = _core.ShardWriter(str(out), 1, 20 * values.size, 1 << 22)
            for _ in range(20):
                assert writer.append_file(pieces, "float32", values.size, "uint8", threads=2)[0]
            writer.finish()
            results[i] = b"".join((out / name).read_bytes() for name in writer.names)
        except Exception as error:  # noqa: BLE001 (reported below)
            errors.append(error)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors
    for i, (_, _, want) in enumerate(inputs):
        assert results[i] == want * 20


@pytest.mark.parametrize("budget", [0, BOUND, 16 << 20])
def test_nan_and_inf_are_refused_before_writing(tmp_path, read_buffer, budget):
    read_buffer(budget)
    n = 3 * SPLIT
    for bad, where in ((np.nan, 5), (np.inf, n - 1), (-np.inf, SPLIT + 17)):
        x = np.random.default_rng(1).standard_normal(n).astype(np.float32)
        x[where] = bad
        pieces = write_pieces(tmp_path, x.tobytes(), [])
        for target in ("uint8", "uint16"):
            (written, (lo, hi, has_nan), _, _), _ = append(tmp_path, pieces, "float32", n, target, lead=5, threads=2)
            assert not written and has_nan == np.isnan(bad)
            if not np.isnan(bad):
                assert np.isinf(lo if bad < 0 else hi)
        result, got = append(tmp_path, pieces, "float32", n, "float16", threads=2)
        if np.isnan(bad):
            assert not result[0] and result[1][2]
            # A float16 NaN is the caller's choice: written as numpy writes it when not refused.
            result, got = append(tmp_path, pieces, "float32", n, "float16", refuse_nan=False)
        assert result[0] and got == x.astype(np.float16).tobytes()


def test_constant_and_empty_tensors(tmp_path):
    x = np.full(CHUNK + 5, -0.75, np.float32)
    pieces = write_pieces(tmp_path, x.tobytes(), [])
    (written, rng, mn, scale), got = append(tmp_path, pieces, "float32", x.size, "uint16", threads=2)
    assert written and rng == (-0.75, -0.75, False) and (mn, scale) == (-0.75, 1.0) and got == bytes(2 * x.size)
    (written, rng, mn, scale), got = append(tmp_path, [], "float32", 0, "uint8")
    assert written and rng == (None, None, False) and (mn, scale) == (0.0, 1.0) and got == b""


def test_minmax_file_matches_the_kernel(tmp_path):
    x = np.random.default_rng(2).standard_normal(2 * SPLIT + 9).astype(np.float32)
    x[SPLIT + 3] = -0.0
    pieces = write_pieces(tmp_path, x.tobytes(), [12345])
    for isa in ISAS:
        assert _core.minmax_file(pieces, "float32", x.size, isa=isa, threads=2) == _core.minmax(x)
    assert _core.minmax_file([], "float32", 0) == (None, None, False)


@pytest.mark.parametrize("budget", [0, BOUND, 16 << 20])
def test_truncated_and_unreadable_files_raise_naming_the_file(tmp_path, read_buffer, budget):
    read_buffer(budget)
    n = 4 * SPLIT
    data = np.random.default_rng(4).standard_normal(n).astype(np.float32).tobytes()
    pieces = write_pieces(tmp_path, data, [len(data) // 2])
    os.truncate(pieces[1][0], len(data) // 3)  # the second file lost its end after planning
    for call in (lambda: _core.minmax_file(pieces, "float32", n, threads=2),
                 lambda: append(tmp_path, pieces, "float32", n, "uint8", threads=2)):
        with pytest.raises(_core.ChangedFileError, match="piece1.bin: file ends early") as error:
            call()
        assert isinstance(error.value, OSError)
    missing = [(str(tmp_path / "gone.bin"), 0, 4)]
    with pytest.raises(FileNotFoundError) as error:
        _core.minmax_file(missing, "float32", 1)
    assert error.value.filename == str(tmp_path / "gone.bin")
    with pytest.raises(IsADirectoryError):  # open succeeds, pread fails with EISDIR
        _core.minmax_file([(str(tmp_path), 0, 4)], "float32", 1)


def test_bad_arguments_are_value_errors(tmp_path):
    pieces = write_pieces(tmp_path, bytes(40), [])
    with pytest.raises(ValueError, match="hold 40 bytes, but 11 elements need 44"):
        _core.minmax_file(pieces, "float32", 11)
    with pytest.raises(ValueError, match="stored must be"):
        _core.minmax_file(pieces, "int32", 10)
    writer = _core.ShardWriter(str(tmp_path), 1, 10, 100)
    with pytest.raises(ValueError, match="target must be"):
        writer.append_file(pieces, "float32", 10, "int8")
    with pytest.raises(ValueError, match="more bytes appended"):
        writer.append_file(pieces, "float32", 10, "uint16")
    writer.abort()
