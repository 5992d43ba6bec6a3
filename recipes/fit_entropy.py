"""Fit a codec's entropy table (``.grvq`` format version 3) on a corpus and save it beside the weights.

    python -m recipes.fit_entropy --model runs/codec/best --manifest data/corpus/manifest.jsonl \\
        [--clips 1500] [--max-seconds 8] [--seed 0] [--out DIR/entropy_table.npz]

A codec trained on your data has no table, so ``compress`` writes fixed 10-bit codes for it. This
encodes ``--clips`` recordings of the manifest's train split (drawn at random with ``--seed``, the
first ``--max-seconds`` of each; never the held-out speech sources of ``recipes.evaluate``, nor an
evaluation-only or reserved source, which are refused), fits :func:`codec.entropy.fit_table` on their
codes and writes ``entropy_table.npz`` into the model's folder, where ``Codec.from_pretrained`` finds
it (a table already there is replaced: it belongs to the weights it was fitted on). Then it reports
the coded bits of up to ``--check-clips`` validation-split clips, which the table was not fitted on,
against the fixed codes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from codec import Codec, entropy
from vocoder.checkpoint import load_state

from .data import ManifestEntry, ManifestError, read_manifest, refuse_untrainable
from .evaluate import HELD_OUT_SOURCES


def read_clip(manifest: Path, entry: ManifestEntry, max_seconds: float) -> np.ndarray:
    """The first ``max_seconds`` of a manifest entry as ``[channels, T]`` float32."""
    data, _ = sf.read(str(manifest.parent / entry.path), frames=int(max_seconds * entry.sample_rate),
                      dtype="float32", always_2d=True)
    return data.T


def clip_codes(codec: Codec, manifest: Path, entries: Sequence[ManifestEntry], max_seconds: float,
               desc: str) -> List[np.ndarray]:
    """Codes ``[K, F]`` of each entry (all codebooks); clips shorter than two frames are left out."""
    codes = []
    for entry in tqdm(entries, desc=desc, unit="clip"):
        clip = codec.encode(read_clip(manifest, entry, max_seconds), entry.sample_rate, progress=False)[0]
        if clip.shape[-1] >= 2:
            codes.append(clip.cpu().numpy())
    return codes


def train_codes(codec: Codec, manifest: Path, clips: int, max_seconds: float, seed: int = 0) -> List[np.ndarray]:
    """Codes ``[K, F]`` of ``clips`` random train-split recordings of ``manifest`` (held-out sources left
    out, never-train sources refused), at least 8 of them two frames or longer."""
    entries = [e for e in read_manifest(manifest, "train") if e.source not in HELD_OUT_SOURCES]
    refuse_untrainable(entries, manifest)
    if len(entries) < 8:
        raise ManifestError(f"{manifest}: {len(entries)} train-split recordings (outside the held-out sources) "
                            "are too few to fit an entropy table; at least 8 are needed")
    chosen = np.random.default_rng(seed).permutation(len(entries))[:clips]
    codes = clip_codes(codec, manifest, [entries[i] for i in sorted(chosen)], max_seconds, "encoding")
    if len(codes) < 8:
        raise ManifestError(f"{manifest}: only {len(codes)} chosen clips are two code frames or longer")
    return codes


def codebook_vectors(codec: Codec) -> List[np.ndarray]:
    """The codec's codebooks in the codes' order, as :func:`codec.entropy.fit_table` takes them."""
    return [book.float().cpu().numpy() for book in codec.quantizer.codebooks_by_code()]


def fit_codec_table(codec: Codec, manifest: Path, clips: int = 1500, max_seconds: float = 8.0,
                    seed: int = 0) -> entropy.EntropyTable:
    """An entropy table for ``codec`` from ``clips`` random train-split recordings of ``manifest``."""
    q = codec.quantizer.config
    return entropy.fit_table(train_codes(codec, manifest, clips, max_seconds, seed), codebook_vectors(codec),
                             q.groups, codec.fingerprint(), num_clusters=min(64, q.codebook_size // 4))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a saved codec's folder")
    parser.add_argument("--manifest", type=Path, required=True, help="a corpus manifest (recipes.prepare_data)")
    parser.add_argument("--clips", type=int, default=1500, help="train-split recordings to fit on")
    parser.add_argument("--max-seconds", type=float, default=8.0, help="the first seconds of each recording")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check-clips", type=int, default=48, help="validation-split clips to report bits on")
    parser.add_argument("--out", type=Path, help=f"where to write the table (default: MODEL/{entropy.TABLE_FILE})")
    args = parser.parse_args(argv)
    if args.clips < 8 or args.max_seconds <= 0:
        parser.error("--clips must be at least 8 and --max-seconds positive")
    try:
        # Weights only: a table already beside them may belong to earlier weights (it is being replaced).
        codec = Codec.build_saved(args.model)
        load_state(codec, args.model)
        codec.eval()
        table = fit_codec_table(codec, args.manifest, args.clips, args.max_seconds, args.seed)
        out = table.save(args.out or args.model / entropy.TABLE_FILE)
        print(f"entropy table {table.table_id.hex()} for model {codec.fingerprint().hex()}: {out} "
              f"({out.stat().st_size / 1e6:.1f} MB)")
        codes = clip_codes(codec, args.manifest, read_manifest(args.manifest, "valid")[: args.check_clips],
                           args.max_seconds, "checking")
    except (ValueError, OSError, RuntimeError) as err:  # CheckpointError and ManifestError are ValueErrors
        print(f"error: {err}", file=sys.stderr)
        return 2
    if codes:
        fixed = sum(c.size for c in codes) * codec.config.quantizer.bits_per_code
        coded = sum(8 * len(entropy.encode_codes(c[None], table)) for c in codes)
        print(f"validation split, {len(codes)} clips: {coded / fixed:.3f} of the fixed codes' bits "
              f"({1 - coded / fixed:+.1%} saved)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
