"""Lhotse CutSets and Shar shards as training data: lossless conversion, one dataset path, and a
codec smoke run on a miniature LibriTTS prepared by Lhotse's own recipe."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("lhotse")

from lhotse import CutSet  # noqa: E402
from lhotse.recipes import prepare_libritts  # noqa: E402

from recipes.data import AudioSegmentDataset, ManifestEntry, ManifestError, read_manifest, write_manifest  # noqa: E402
from recipes.lhotse_io import main as lhotse_io  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WAVEFORM = ("--config", str(ROOT / "recipes/configs/codec_waveform.yaml"))
LIBRITTS_RATE = 24_000


def tone_file(path: Path, freq: float, rate: int, seconds: float = 1.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)


@pytest.fixture()
def corpus(tmp_path) -> Path:
    """Five clips in two sources at two rates, with a language, a non-ASCII and an empty caption."""
    rows = [("a/x/one.wav", 16_000, "train", "a dog barking", "en"), ("a/x/two.wav", 16_000, "train", "", None),
            ("a/y/three.wav", 22_050, "train", "pluie qui tombe «fort»", "fr"),
            ("b/four.wav", 16_000, "valid", "a bell", None), ("b/five.wav", 16_000, "test", "a horn", None)]
    entries = []
    for i, (path, rate, split, caption, language) in enumerate(rows):
        tone_file(tmp_path / "corpus" / path, 200.0 * (i + 1), rate, seconds=0.75)
        source = path.split("/")[0]
        entries.append(ManifestEntry(path, 0.75, rate, source, caption, split, f"{source}/{Path(path).parent.name}",
                                     language))
    manifest = tmp_path / "corpus" / "manifest.jsonl"
    write_manifest(manifest, entries)
    return manifest


def test_manifest_to_cuts_and_back_is_lossless(corpus, tmp_path):
    cuts = tmp_path / "cuts.jsonl.gz"
    assert lhotse_io(["to-lhotse", str(corpus), str(cuts)]) == 0
    first = next(iter(CutSet.from_file(cuts)))
    assert first.supervisions[0].text == "a dog barking" and first.supervisions[0].language == "en"
    assert first.custom == {"source": "a", "split": "train", "recording_id": "a/x", "path": "a/x/one.wav"}
    # Back into the corpus folder: the same bytes; into another folder: the same files, reached from there.
    assert lhotse_io(["from-lhotse", str(cuts), str(corpus.with_name("again.jsonl"))]) == 0
    assert corpus.with_name("again.jsonl").read_bytes() == corpus.read_bytes()
    elsewhere = tmp_path / "elsewhere" / "manifest.jsonl"
    assert lhotse_io(["from-lhotse", str(cuts), str(elsewhere)]) == 0
    for old, new in zip(read_manifest(corpus), read_manifest(elsewhere)):
        assert (elsewhere.parent / new.path).resolve() == (corpus.parent / old.path).resolve()
        assert new == replace(old, path=new.path)


def test_shar_round_trip_carries_the_audio(corpus, tmp_path):
    shar = tmp_path / "shar"
    assert lhotse_io(["to-shar", str(corpus), str(shar), "--shard-size", "2"]) == 0
    assert len(list(shar.glob("cuts.*.jsonl.gz"))) == len(list(shar.glob("recording.*.tar"))) == 3
    out = tmp_path / "unpacked" / "manifest.jsonl"
    assert lhotse_io(["from-lhotse", str(shar), str(out)]) == 0
    assert out.read_bytes() == corpus.read_bytes()
    for entry in read_manifest(out):
        original, _ = sf.read(str(corpus.parent / entry.path), dtype="float32")
        unpacked, _ = sf.read(str(out.parent / entry.path), dtype="float32")
        # Lhotse rounds 0.75 s at 22.05 kHz up to whole samples (one more than the file has).
        assert 0 <= len(unpacked) - len(original) <= 1
        np.testing.assert_allclose(unpacked[: len(original)], original, atol=1 / 32768)  # FLAC keeps 16 bits


def crops(manifest, split, **options) -> List[Tuple[str, torch.Tensor, int]]:
    dataset = AudioSegmentDataset(manifest, split, 0.5, 16_000, crop="center", **options)
    return [(item["caption"], item["audio"], item["num_samples"]) for item in dataset]


def test_one_dataset_path_reads_manifest_cuts_and_shar_alike(corpus, tmp_path):
    cuts, shar = tmp_path / "cuts.jsonl.gz", tmp_path / "shar"
    assert lhotse_io(["to-lhotse", str(corpus), str(cuts)]) == 0
    assert lhotse_io(["to-shar", str(cuts), str(shar)]) == 0
    for split, options in [("train", {}), ("train", {"exclude": ("a/y",)}), ("valid", {}), (None, {"include": ("b",)})]:
        expected = crops(corpus, split, **options)
        for other in (cuts, shar):
            got = crops(other, split, **options)
            assert [c for c, _, _ in got] == [c for c, _, _ in expected]
            assert [n for _, _, n in got] == [n for _, _, n in expected]
            for (_, a, _), (_, b, _) in zip(got, expected):  # 22.05 kHz resampled alike; Shar adds 16-bit rounding
                torch.testing.assert_close(a, b, atol=2e-4, rtol=0)
    with pytest.raises(ManifestError, match="no 'test' entries"):
        AudioSegmentDataset(shar, "test", 0.5, 16_000, exclude=("b",))


@pytest.mark.parametrize("args, message", [
    (["to-lhotse", "{corpus}", "{tmp}/cuts.json"], "named \\*.jsonl.gz"),
    (["to-shar", "{corpus}", "{corpus_dir}"], "not an empty folder"),
    (["to-shar", "{corpus}", "{tmp}/s", "--shard-size", "0"], "at least 1"),
    (["from-lhotse", "{tmp}/garbage.jsonl.gz", "{tmp}/o/manifest.jsonl"], "not a readable Lhotse CutSet"),
    (["from-lhotse", "{tmp}", "{tmp}/o/manifest.jsonl"], "no Lhotse Shar shards"),
])
def test_bad_inputs_are_one_error_line(corpus, tmp_path, capsys, args, message):
    with gzip.open(tmp_path / "garbage.jsonl.gz", "wt") as handle:
        handle.write('{"id": "x", "type": "NoSuchCut"}\n')
    filled = [a.format(corpus=corpus, corpus_dir=corpus.parent, tmp=tmp_path) for a in args]
    assert lhotse_io(filled) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and re.search(message, err), err


# -- LibriTTS, prepared by Lhotse --------------------------------------------------------------------

def fake_libritts(root: Path) -> Path:
    """LibriTTS's layout: PART/speaker/chapter/speaker_chapter_utt.wav with .normalized.txt and
    .original.txt beside it, and the chapter's .trans.tsv and .book.tsv (which Lhotse reads)."""
    corpus = root / "LibriTTS"
    layout = {"train-clean-100": {"19": "198", "26": "495"}, "dev-clean": {"84": "121123"}}
    for part, speakers in layout.items():
        for n, (speaker, chapter) in enumerate(speakers.items()):
            folder = corpus / part / speaker / chapter
            trans, book = [], []
            for utt in range(2):
                uid = f"{speaker}_{chapter}_{utt:06d}_000000"
                text = f"Sentence {utt} of speaker {speaker}."
                tone_file(folder / f"{uid}.wav", 150.0 * (n + 1) + 50 * utt, LIBRITTS_RATE)
                (folder / f"{uid}.normalized.txt").write_text(text)
                (folder / f"{uid}.original.txt").write_text(text)
                trans.append(f"{uid}\t{text}\t{text}")
                book.append(f"{uid}\t{text}\t{text}\t30.5")
            (folder / f"{speaker}_{chapter}.trans.tsv").write_text("\n".join(trans) + "\n")
            (folder / f"{speaker}_{chapter}.book.tsv").write_text("\n".join(book) + "\n")
    return corpus


@pytest.fixture(scope="module")
def libritts(tmp_path_factory) -> dict:
    """The fake corpus prepared as ``lhotse prepare libritts`` does (its recordings manifests are what
    data.manifest names), the same as a CutSet (``lhotse cut simple``), and as our Shar shards."""
    root = tmp_path_factory.mktemp("libritts")
    prepared = prepare_libritts(fake_libritts(root), dataset_parts=["train-clean-100", "dev-clean"],
                                output_dir=root / "manifests")
    paths = {name: root / "manifests" / f"libritts_recordings_{part}.jsonl.gz"
             for name, part in (("train", "train-clean-100"), ("dev", "dev-clean"))}
    paths["cuts"] = root / "train_cuts.jsonl.gz"
    CutSet.from_manifests(recordings=prepared["train-clean-100"]["recordings"],
                          supervisions=prepared["train-clean-100"]["supervisions"]).to_file(paths["cuts"])
    paths["shar"] = root / "shar"
    assert lhotse_io(["to-shar", str(paths["train"]), str(paths["shar"]), "--shard-size", "2"]) == 0
    return paths


def test_libritts_reads_as_entries_from_recordings_cuts_and_shar(libritts):
    dataset = AudioSegmentDataset(libritts["train"], "train", 0.5, 16_000, crop="start")
    assert len(dataset) == 4
    entry = {e.recording_id: e for e in dataset.entries}["lhotse/19_198_000000_000000"]
    assert entry.sample_rate == LIBRITTS_RATE and entry.language == "English" and entry.source == "lhotse"
    assert entry.caption == "Sentence 0 of speaker 19." and entry.split == "train"
    assert Path(entry.path).is_file()
    assert dataset[0]["audio"].shape == (1, 8000)
    for other in ("cuts", "shar"):
        same = AudioSegmentDataset(libritts[other], "train", 0.5, 16_000, crop="start")
        assert [e.caption for e in same.entries] == [e.caption for e in dataset.entries]
        torch.testing.assert_close(same[0]["audio"], dataset[0]["audio"], atol=2e-4, rtol=0)


def smoke_train(output: Path, manifest: Path, valid: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "recipes.train", "codec", "--smoke", *WAVEFORM, "--output",
                           str(output), "--set", f"data.manifest={manifest}", f"data.valid_manifest={valid}",
                           "data.valid_split=null"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = torch.load(output / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["global_step"] == 4  # the smoke config's max_steps


@pytest.mark.parametrize("data", ["train", "shar"])  # lhotse prepare's recordings manifest; our Shar
def test_codec_smoke_run_trains_on_prepared_libritts_and_its_shar(libritts, tmp_path, data):
    smoke_train(tmp_path / "run", libritts[data], libritts["dev"])
