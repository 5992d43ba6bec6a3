"""Entropy-coded .grvq streams (format version 3): exact round trips, bit-exact decoding across
thread counts, old versions still decoding, and a parser that decodes or raises BitstreamError."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codec import BitstreamError, entropy
from codec.bitstream import (CODING_CONTEXT, ENTROPY_VERSION, HEADER_BYTES, StreamHeader, pack, read_header,
                             unpack)

SR, HOP = 16_000, 320
FINGERPRINT = b"\x07" * 8
FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent


def markov_clips(count: int, frames: int, seed: int = 0) -> list:
    """Codes that repeat or move to a near code, as real codes do, so context helps."""
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(count):
        c = np.zeros((4, frames), dtype=np.int64)
        c[:, 0] = rng.integers(0, 1024, 4)
        for t in range(1, frames):
            stay = rng.random(4) < 0.6
            c[:, t] = np.where(stay, c[:, t - 1], (c[:, t - 1] + rng.integers(-3, 4, 4)) % 1024)
        clips.append(c)
    return clips


@pytest.fixture(scope="module")
def table() -> entropy.EntropyTable:
    vectors = [np.random.default_rng(k).standard_normal((1024, 6)) for k in range(4)]
    table = entropy.fit_table(markov_clips(24, 80), vectors, 2, FINGERPRINT, num_clusters=16)
    entropy.register_table(table)
    return table


def header_for(codes: np.ndarray) -> StreamHeader:
    batch, books, frames = codes.shape
    return StreamHeader(sample_rate=SR, batch=batch, length=frames * HOP - 5, num_codebooks=books,
                        codebook_size=1024, hop_length=HOP, num_frames=frames, fingerprint=FINGERPRINT)


def recrc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize("books", [4, 2])
def test_round_trip_is_exact_and_smaller(table, books):
    codes = np.stack(markov_clips(2, 60, seed=5))[:, :books]
    fixed = pack(header_for(codes), codes)
    coded = pack(header_for(codes), codes, entropy_coding=True)
    header, back = unpack(coded)
    assert header.version == ENTROPY_VERSION and header.coding == CODING_CONTEXT
    assert header.table_id == table.table_id
    assert np.array_equal(back, codes) and back.dtype == np.int64
    assert len(coded) < 0.8 * len(fixed)
    # The coder's bytes are the ideal code length to within a few bytes.
    ideal = entropy.coded_bits(codes, table) / 8
    assert abs((len(coded) - (len(fixed) - header.payload_bytes + 5)) - ideal) < 4


def test_incompressible_codes_stay_fixed_width_version_2(table):
    codes = np.random.default_rng(0).integers(0, 1024, size=(1, 4, 30))
    data = pack(header_for(codes), codes, entropy_coding=True)
    assert data == pack(header_for(codes), codes) and read_header(data).version == 2


def test_no_table_for_the_model_means_fixed_codes(table):
    codes = np.stack(markov_clips(1, 30))
    header = replace(header_for(codes), fingerprint=b"\x09" * 8)
    assert read_header(pack(header, codes, entropy_coding=True)).version == 2


def test_stream_with_an_unknown_table_is_refused(table):
    codes = np.stack(markov_clips(1, 30))
    data = bytearray(pack(header_for(codes), codes, entropy_coding=True))
    start = HEADER_BYTES + 2 + 1  # after the gain and the coding byte
    data[start:start + 4] = b"\xde\xad\xbe\xef"
    with pytest.raises(BitstreamError, match="does not have"):
        unpack(recrc(bytes(data[:-4])))


def test_old_versions_still_decode(table):
    codes = np.stack(markov_clips(2, 20))
    for version in (1, 2):
        header = replace(header_for(codes), version=version, gains_db=() if version == 1 else (1.5, -2.0))
        back_header, back = unpack(pack(header, codes))
        assert back_header.version == version and np.array_equal(back, codes)
    # A version 3 stream may also hold fixed-width codes (coding 0).
    header = replace(header_for(codes), version=3)
    back_header, back = unpack(pack(header, codes))
    assert back_header.version == 3 and back_header.coding == 0 and np.array_equal(back, codes)


@pytest.mark.parametrize("cut", [1, 5, 12, HEADER_BYTES, HEADER_BYTES + 4, -5, -2, -1])
def test_truncated_entropy_stream(table, cut):
    codes = np.stack(markov_clips(1, 40))
    data = pack(header_for(codes), codes, entropy_coding=True)
    with pytest.raises(BitstreamError):
        unpack(data[:cut])
    with pytest.raises(BitstreamError):  # the same cut, re-sealed: the payload itself is short
        unpack(recrc(data[:-4][:cut] if cut > 0 else data[:-4][:cut]))


def test_forged_frame_count_is_refused_at_once(table):
    codes = np.stack(markov_clips(1, 40))
    data = pack(header_for(codes), codes, entropy_coding=True)
    frames = 10_000_000
    head = bytearray(data[:-4])
    struct.pack_into("<QBIII", head, 12, frames * HOP, 4, 1024, HOP, frames)
    started = time.perf_counter()
    with pytest.raises(BitstreamError, match="cannot hold"):
        unpack(recrc(bytes(head)))
    assert time.perf_counter() - started < 1.0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.binary(max_size=120), frames=st.integers(1, 60), books=st.sampled_from([2, 4]))
def test_any_payload_decodes_or_raises_bitstream_error(table, payload, frames, books):
    codes = np.zeros((1, books, frames), dtype=np.int64)
    head = pack(header_for(codes), codes, entropy_coding=False)  # a version 2 header to rewrite
    header = replace(read_header(head), version=3, coding=CODING_CONTEXT, table_id=table.table_id)
    body = (head[:4] + b"\x03" + head[5:HEADER_BYTES + 2] + bytes([CODING_CONTEXT]) + table.table_id + payload)
    try:
        back_header, back = unpack(recrc(body))
    except BitstreamError:
        return
    assert back_header == header and back.shape == (1, books, frames)
    assert back.min() >= 0 and back.max() < 1024


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(0, 10_000), value=st.integers(1, 255))
def test_payload_edits_with_a_recomputed_crc(table, position, value):
    codes = np.stack(markov_clips(1, 50, seed=3))
    data = bytearray(pack(header_for(codes), codes, entropy_coding=True)[:-4])
    start = read_header(bytes(data) + b"\0" * 4).start
    position = start + position % (len(data) - start)
    data[position] ^= value
    try:
        _, back = unpack(recrc(bytes(data)))
    except BitstreamError:
        return
    assert back.shape == codes.shape and back.min() >= 0 and back.max() < 1024


# ------------------------------------------------------------------------------------ the shipped model


SCRIPT = """
import json, sys, numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
from codec import Codec, bitstream
import soundfile as sf
mode, path = sys.argv[2], sys.argv[3]
codec = Codec.from_pretrained()
if mode == "encode":
    wav, sr = sf.read(sys.argv[4], dtype="float32")
    data = codec.compress(wav, sr)
    open(path, "wb").write(data)
    fixed = codec.compress(wav, sr, entropy_coding=False)
    np.save(path + ".codes.npy", bitstream.unpack(fixed)[1])
else:
    data = open(path, "rb").read()
    header, codes = bitstream.unpack(data)
    again = bitstream.pack(header, codes)  # the same codes coded again in this process
    audio, sr = codec.decompress(data)
    print(json.dumps({"version": header.version, "codes": codes.tolist(), "same_bytes": again == data,
                      "threads": torch.get_num_threads(), "finite": bool(torch.isfinite(audio).all())}))
"""


def run(threads: int, *args: str) -> str:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(threads), *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(not (ROOT / "codec/pretrained/default/model.safetensors").is_file(), reason="no shipped codec")
@pytest.mark.parametrize("write, read", [(1, 2), (2, 1)])
def test_shipped_stream_decodes_bit_exactly_with_other_thread_counts(tmp_path, write, read):
    stream = tmp_path / "speech.grvq"
    run(write, "encode", stream, FIXTURES / "speech_fillets_cs_let_v_vrak0.flac")
    result = json.loads(run(read, "decode", stream))
    assert result["threads"] == read and result["version"] == ENTROPY_VERSION and result["finite"]
    assert np.array_equal(np.array(result["codes"]), np.load(str(stream) + ".codes.npy"))
    assert result["same_bytes"]  # integer probabilities: the other process codes them to the same bytes


@pytest.mark.skipif(not entropy.TABLES_DIR.is_dir(), reason="no shipped entropy table")
def test_shipped_table_saves_bits_and_codes_in_real_time():
    from codec import Codec

    codec = Codec.from_pretrained()
    table = entropy.table_for(codec.fingerprint())
    assert table is not None
    import soundfile as sf

    rows = []
    for path in sorted(FIXTURES.glob("speech_*.flac")):
        wav, sr = sf.read(path, dtype="float32")
        fixed = codec.compress(wav, sr, entropy_coding=False)
        header, codes = unpack(fixed)
        started = time.perf_counter()
        coded = pack(header, codes, entropy_coding=True)
        encode_s = time.perf_counter() - started
        started = time.perf_counter()
        _, back = unpack(coded)
        decode_s = time.perf_counter() - started
        assert np.array_equal(back, codes)
        seconds = header.length / header.sample_rate
        rows.append((path.name, seconds, 8 * (len(coded) - 4 - header.start - 5) / seconds,
                     8 * header.payload_bytes / seconds, (encode_s + decode_s) / seconds))
    for name, seconds, coded_bps, fixed_bps, rtf in rows:
        print(f"{name}: {seconds:.1f} s, payload {coded_bps:.0f} b/s against {fixed_bps:.0f} b/s fixed, "
              f"entropy encode + decode {rtf:.3f} x real time")
    assert sum(r[2] for r in rows) < 0.97 * sum(r[3] for r in rows)
    assert all(r[4] < 1.0 for r in rows)  # real time on this (shared) machine, generous


# ------------------------------------------------------------------- a model's own table (recipes.fit_entropy)


@pytest.fixture(scope="module")
def fitted_model(tmp_path_factory):
    """A tiny spectral codec saved with a table fitted by ``python -m recipes.fit_entropy``."""
    import torch

    from codec import Codec, SpectralCodecConfig
    from recipes import fit_entropy
    from tests.conftest import make_corpus

    root = tmp_path_factory.mktemp("fit_entropy")
    manifest = make_corpus(root / "corpus", clips=15, seconds=1.0)
    torch.manual_seed(0)
    model_dir = Codec(SpectralCodecConfig.tiny()).eval().save_pretrained(root / "model")
    assert fit_entropy.main(["--model", str(model_dir), "--manifest", str(manifest), "--clips", "10",
                             "--max-seconds", "1"]) == 0
    return model_dir, manifest


def test_fit_entropy_saves_a_table_that_loads_beside_the_weights(fitted_model, tmp_path):
    from codec import Codec

    model_dir, _ = fitted_model
    saved = entropy.EntropyTable.load(model_dir / entropy.TABLE_FILE)
    model = Codec.from_pretrained(model_dir)
    assert saved.fingerprint == model.fingerprint()
    assert entropy.table_for(model.fingerprint()).table_id == saved.table_id
    wav = 0.2 * np.sin(np.arange(16_000) / 16_000 * 2 * np.pi * 330).astype(np.float32)
    codes = model.encode(wav, 16_000).numpy()
    header = replace(header_for(codes), codebook_size=model.codebook_size, fingerprint=model.fingerprint(),
                     table_id=saved.table_id, version=ENTROPY_VERSION, coding=CODING_CONTEXT)
    assert np.array_equal(unpack(pack(header, codes))[1], codes)
    # save_pretrained keeps the table with the weights, so a copy of the model still entropy-codes.
    copy = model.save_pretrained(tmp_path / "copy")
    assert entropy.EntropyTable.load(copy / entropy.TABLE_FILE).table_id == saved.table_id


def test_a_table_of_other_weights_or_a_corrupt_one_is_refused(fitted_model, tmp_path):
    import shutil

    import torch

    from codec import Codec, SpectralCodecConfig
    from vocoder.checkpoint import CheckpointError

    model_dir, _ = fitted_model
    torch.manual_seed(1)
    other = Codec(SpectralCodecConfig.tiny()).save_pretrained(tmp_path / "other")
    shutil.copy(model_dir / entropy.TABLE_FILE, other / entropy.TABLE_FILE)
    with pytest.raises(CheckpointError, match="fitted for another model"):
        Codec.from_pretrained(other)
    (other / entropy.TABLE_FILE).write_bytes(b"PK\x03\x04 not a table")
    with pytest.raises(CheckpointError, match="not a valid entropy table"):
        Codec.from_pretrained(other)


def test_fit_entropy_refuses_a_manifest_without_enough_training_clips(fitted_model, tmp_path, capsys):
    from recipes import fit_entropy
    from tests.conftest import make_corpus

    model_dir, _ = fitted_model
    small = make_corpus(tmp_path / "small", clips=3)
    assert fit_entropy.main(["--model", str(model_dir), "--manifest", str(small), "--out", str(tmp_path / "t.npz")]) == 2
    assert "too few" in capsys.readouterr().err


def test_save_pretrained_keeps_a_table_only_where_it_fits(fitted_model, tmp_path):
    import warnings

    import torch

    from codec import Codec, SpectralCodecConfig

    model_dir, _ = fitted_model
    model = Codec.from_pretrained(model_dir)
    # float16 codebooks are other codebooks: the float32 model's table would be refused there.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        half = model.save_pretrained(tmp_path / "half", half=True)
    assert not (half / entropy.TABLE_FILE).exists() and any("refit" in str(w.message) for w in caught)
    assert Codec.from_pretrained(half).fingerprint() == model.fingerprint(half=True)
    # A folder saved over with other weights loses the table of the weights it held.
    torch.manual_seed(2)
    Codec(SpectralCodecConfig.tiny()).save_pretrained(model.save_pretrained(tmp_path / "over"))
    assert not (tmp_path / "over" / entropy.TABLE_FILE).exists()
    Codec.from_pretrained(tmp_path / "over")


def test_a_table_damaged_inside_its_zip_is_refused(fitted_model, tmp_path):
    import shutil

    from codec import Codec
    from vocoder.checkpoint import CheckpointError

    model_dir, _ = fitted_model
    copy = Path(shutil.copytree(model_dir, tmp_path / "copy"))
    data = bytearray((copy / entropy.TABLE_FILE).read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)  # inside a compressed member: zlib fails, not the zip directory
    (copy / entropy.TABLE_FILE).write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        Codec.from_pretrained(copy)
