"""A GPU plan that is ready before the GPU is: pack the data here, train in short chunks there, bring
back a small checkpoint.

A rented GPU machine of the kind this plan is for gets at most 64 MiB of files sent with the code
and runs commands of at most 10 minutes, and each session starts bare. Four steps:

    # here, before the session: a bundle of what the next chunk trains on
    python -m recipes.gpu_plan pack codec --out data/gpu/bundle.tar [--seed CHUNK] [--also runs/gpu/codec]
    python -m recipes.gpu_plan pack lm --tokens data/tokens --out data/gpu/bundle.tar
    # on the GPU machine, in one command of under 10 minutes (send data/gpu/bundle.tar, and
    # runs/gpu/codec when a chunk before this one brought it back)
    python -m recipes.gpu_plan unpack data/gpu/bundle.tar --out data/gpu/corpus
    python -m recipes.gpu_plan train codec --data data/gpu/corpus --output runs/gpu/codec --minutes 8
    python -m recipes.gpu_plan collect runs/gpu/codec --out "$OUT/codec"
    # here again: copy $OUT/codec to runs/gpu/codec for the next chunk

``pack`` draws a seeded sample of the corpus manifest (``--manifest``, default the recipe's
``data.manifest``): up to ``--valid-clips`` clips of the ``valid`` split (cut to the recipe's
validation crop), then training clips (at most ``--max-seconds`` each) until the byte budget is
reached. Recordings under the recipe config's ``data.exclude`` prefixes (the held-out evaluation
sources) are never packed. Audio is resampled to the model's rate and re-encoded as Ogg Opus at
``--kbps`` (16 by default: for short training crops the codec artefacts at that rate are small
next to the corpus's own). For the language model it packs codec token items (``--tokens``, the
output of :mod:`recipes.extract_tokens`) as zlib-compressed int16 arrays, valid items first; no
exclusion applies there (tokens carry no recording ids). The budget defaults to 60 MiB minus what
else is sent: the repository's tracked and untracked, not ignored files (``git ls-files``) plus the
``--also`` paths (a run folder brought back, anything else carried). Use a new ``--seed`` per chunk
to train each chunk on another sample.

``unpack`` writes a corpus folder the recipes read (``manifest.jsonl`` and 16-bit WAV files, decoded
once so the data loaders do not decode Opus for every crop) or a token folder (``index.jsonl`` and
safetensors shards, as ``extract_tokens`` writes them).

``train`` runs one chunk of ``python -m recipes.train`` with ``--max-time`` minutes and
``trainer.precision`` (``auto``: bf16-mixed on a GPU that computes bfloat16): ``--resume`` when
``OUTPUT/checkpoints/last.ckpt`` exists; else a warm start (``init=``) from ``OUTPUT/best`` when a
chunk brought back weights only, or from ``--init DIR``; else from scratch. A warm start keeps the
weights but not the optimizer state, step count, learning-rate schedule or log. ``--max-time``
counts training only: leave a minute or two of a 10-minute command for start-up, the last
validation and ``collect``.

``collect`` writes what to bring back, at most ``--limit-mb`` (16) MB: ``best/`` (the exported best
weights, converted to fp16 safetensors), ``config.yaml``, the CSV log, and ``checkpoints/last.ckpt``
(optimizer state and step: a true resume) if it still fits. When it does not (at the recipes' full
sizes it does not: Adam's state is twice the weights), only the fp16 weights come back, the next
chunk warm-starts from them, and ``collected.json`` and the output say so.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import shutil
import subprocess
import sys
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf

from .config import RecipeConfigError, load_recipe_config
from .data import ManifestEntry, ManifestError, read_manifest, selected, write_manifest

ROOT = Path(__file__).resolve().parents[1]
MIB = 1 << 20
SEND_LIMIT = 60 * MIB  # of the machine's 64 MiB, a margin for what nobody counted
FORMAT, VERSION = "grvq-gpu-bundle", 1
META, DATA = "bundle.json", "data.bin"
INDEX = {"audio": "manifest.jsonl.gz", "tokens": "tokens.jsonl.gz"}
CODEC_REFERENCE = "codec.json"  # the token folder's record of the codec that made its tokens
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
META_RESERVE = 4096  # bytes held back for bundle.json while clips are added
GZIP_END = 32  # at most the bytes that end a gzip stream (final block and trailer)
SHARD_ITEMS = 1000  # token items per safetensors shard, as extract_tokens writes them
BLOCK, RECORD = 512, 20 * 512  # tar's block and (default) record size


class PlanError(ValueError):
    """An expected failure of a plan step, reported as one ``error:`` line."""


# ------------------------------------------------------------------------------ budget


def tar_size(member_sizes: Sequence[int]) -> int:
    """Bytes of a ustar archive of members of these sizes: a header block each, data padded to
    blocks, two zero blocks at the end, the whole padded to a record."""
    blocks = sum(1 + math.ceil(size / BLOCK) for size in member_sizes) + 2
    return math.ceil(blocks * BLOCK / RECORD) * RECORD


def path_bytes(path: Path) -> int:
    """Size of a file, or of every file under a folder."""
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    raise PlanError(f"--also {path}: no such file or folder")


def files_sent(root: Path, skip: Sequence[Path] = ()) -> int:
    """Bytes of the files that travel with the code from ``root``: tracked, and untracked but not
    ignored (``git ls-files``), less the ``skip`` paths (the bundle being written)."""
    try:
        listing = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others",
                                  "--exclude-standard"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        raise PlanError(f"cannot count the files sent with the code (no git work tree at {root}); "
                        f"pass --budget-mib") from None
    skipped = {p.resolve() for p in skip}
    total = 0
    for name in set(listing.decode().split("\0")) - {""}:
        path = root / name
        if path.is_file() and path.resolve() not in skipped:  # a tracked file may be deleted
            total += path.stat().st_size
    return total


def default_budget(bundle: Path, also: Sequence[Path], root: Path = ROOT) -> int:
    """60 MiB less the repository's files and the ``also`` paths."""
    others = files_sent(root, [bundle]) + sum(path_bytes(p) for p in also)
    budget = SEND_LIMIT - others
    if budget <= 64 * 1024:
        raise PlanError(f"{others / MIB:.1f} MiB already go with the code: no room for a bundle within "
                        f"{SEND_LIMIT / MIB:.0f} MiB; send fewer files or pass --budget-mib")
    return budget


# ------------------------------------------------------------------------------ bundle file


def gzip_lines(lines: Sequence[bytes]) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip format, readable with zcat
    return packer.compress(b"".join(lines)) + packer.flush()


class Bundle:
    """A bundle being filled: one blob of encoded items, a gzip-compressed index line per item, and
    small extras. The index is compressed as it grows (flushed after every line), so the archive's
    size is known exactly before each item is added."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # "audio" or "tokens"
        self.blob = bytearray()
        self.lines: List[bytes] = []
        self.extras: Dict[str, bytes] = {}
        self._index = zlib.compressobj(9, zlib.DEFLATED, 31)
        self._index_bytes = 0

    def size(self, meta: int = META_RESERVE, payload: int = 0, index: Optional[int] = None) -> int:
        """The archive's bytes with ``meta`` bytes of metadata and, optionally, one more item."""
        index = self._index_bytes + GZIP_END if index is None else index
        return tar_size([meta, index, len(self.blob) + payload, *map(len, self.extras.values())])

    def add(self, payload: bytes, row: Dict[str, Any], budget: int) -> bool:
        """Append an item (``row`` gets its offset and length) if the archive stays within ``budget``."""
        row = {**row, "offset": len(self.blob), "length": len(payload)}
        line = (json.dumps(row, ensure_ascii=False) + "\n").encode()
        trial = self._index.copy()
        grown = self._index_bytes + len(trial.compress(line) + trial.flush(zlib.Z_SYNC_FLUSH))
        if self.size(payload=len(payload), index=grown + GZIP_END) > budget:
            return False
        self._index, self._index_bytes = trial, grown
        self.blob += payload
        self.lines.append(line)
        return True

    def write(self, path: Path, meta: Dict[str, Any], budget: int) -> int:
        """Write the archive (dropping items from the end if the final metadata outgrew its reserve);
        returns its size in bytes."""
        while True:
            meta_bytes = (json.dumps({**meta, "items": len(self.lines)}, indent=1) + "\n").encode()
            index = gzip_lines(self.lines)
            if self.size(meta=len(meta_bytes), index=len(index)) <= budget or not self.lines:
                break
            last = json.loads(self.lines.pop())
            del self.blob[last["offset"]:]
        members = {META: meta_bytes, INDEX[self.kind]: index, DATA: bytes(self.blob), **self.extras}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as archive:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                archive.addfile(info, io.BytesIO(data))
        tmp.replace(path)
        return path.stat().st_size


def read_bundle(path: Path) -> Tuple[Dict[str, Any], List[Dict[str, Any]], bytes, Dict[str, bytes]]:
    """The metadata, index rows, data blob and other members of a bundle written by ``pack``."""
    try:
        with tarfile.open(path) as archive:
            members = {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}
    except tarfile.TarError:
        raise PlanError(f"{path} is not a bundle (not a tar archive)") from None
    except OSError as err:
        raise PlanError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        meta = json.loads(members[META])
        ok = meta.get("format") == FORMAT and meta.get("kind") in INDEX
    except (KeyError, ValueError, AttributeError):
        ok = False
    if not ok:
        raise PlanError(f"{path} is not a bundle written by python -m recipes.gpu_plan pack")
    if meta.get("version") != VERSION:
        raise PlanError(f"{path} is bundle version {meta.get('version')}; this script reads version {VERSION}")
    text = zlib.decompress(members[INDEX[meta["kind"]]], wbits=31).decode()
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    extras = {k: v for k, v in members.items() if k not in (META, DATA, INDEX[meta["kind"]])}
    return meta, rows, members[DATA], extras


# ------------------------------------------------------------------------------ pack


def seeded_order(count: int, seed: int) -> List[int]:
    return np.random.default_rng(seed).permutation(count).tolist()


def opus_level(kbps: float) -> float:
    """libsndfile's compression level for an Opus bitrate: it maps level q to (1 - q) * 250 + 6 kbps per channel."""
    return min(1.0, max(0.0, 1.0 - (kbps - 6.0) / 250.0))


def encode_opus(wav: np.ndarray, sample_rate: int, kbps: float) -> Tuple[bytes, int]:
    """Mono float audio as Ogg Opus bytes, and the number of frames they decode to."""
    buffer = io.BytesIO()
    sf.write(buffer, wav, sample_rate, format="OGG", subtype="OPUS", compression_level=opus_level(kbps))
    data = buffer.getvalue()
    return data, sf.info(io.BytesIO(data)).frames


def read_clip(path: Path, sample_rate: int, max_seconds: float) -> np.ndarray:
    """The first ``max_seconds`` of an audio file, mono at ``sample_rate``."""
    from vocoder.audio import prepare_waveform

    try:
        with sf.SoundFile(str(path)) as handle:
            file_rate = handle.samplerate
            data = handle.read(int(math.ceil(max_seconds * file_rate)), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise PlanError(f"cannot read {path}: {err}") from None
    return prepare_waveform(data.T, file_rate, sample_rate)[0, 0].numpy()


def model_sample_rate(task: str, config: Dict[str, Any]) -> int:
    """The audio rate the task's model trains at."""
    from vocoder.checkpoint import config_from_dict

    if task == "codec":
        from codec.config import codec_config_from_dict
        return codec_config_from_dict(config["model"]).sample_rate
    from vocoder import VocoderConfig
    return config_from_dict(VocoderConfig, config["model"], "model").mel.sample_rate


def audio_sample(entries: List[ManifestEntry], exclude: Sequence[str], seed: int,
                 valid_clips: int) -> Iterator[ManifestEntry]:
    """Up to ``valid_clips`` validation clips, then every training clip, each in a seeded order,
    leaving out the recordings under the ``exclude`` prefixes."""
    kept = [e for e in entries if selected(e, exclude=exclude)]
    valid = [e for e in kept if e.split == "valid"]
    train = [e for e in kept if e.split == "train"]
    yield from (valid[i] for i in seeded_order(len(valid), seed)[:valid_clips])
    yield from (train[i] for i in seeded_order(len(train), seed))


def pack_audio(args: argparse.Namespace, config: Dict[str, Any], budget: int) -> Tuple[Bundle, Dict[str, Any]]:
    """Fill a bundle with Opus clips of the corpus; returns it and its metadata."""
    manifest = Path(args.manifest or config["data"]["manifest"])
    sample_rate = model_sample_rate(args.task, config)
    if sample_rate not in OPUS_RATES:
        raise PlanError(f"Opus encodes {OPUS_RATES} Hz only; the {args.task} trains at {sample_rate} Hz")
    exclude = list(config["data"]["exclude"])
    valid_seconds = min(args.max_seconds, config["data"]["valid_segment_seconds"])
    bundle, seconds = Bundle("audio"), {"train": 0.0, "valid": 0.0}
    for entry in audio_sample(read_manifest(manifest, check_files=False), exclude, args.seed, args.valid_clips):
        wav = read_clip(manifest.parent / entry.path, sample_rate,
                        valid_seconds if entry.split == "valid" else args.max_seconds)
        if wav.size == 0:
            continue
        payload, frames = encode_opus(wav, sample_rate, args.kbps)
        row = {**entry.to_json(), "duration": frames / sample_rate, "sample_rate": sample_rate}
        if not bundle.add(payload, row, budget):
            break  # the budget is spent: the sample is a prefix of the seeded order
        seconds[entry.split] += frames / sample_rate
    meta = {"sample_rate": sample_rate, "kbps": args.kbps, "manifest": str(manifest), "exclude": exclude,
            "seconds": {k: round(v, 2) for k, v in seconds.items()}}
    return bundle, meta


def pack_tokens(args: argparse.Namespace, config: Dict[str, Any], budget: int) -> Tuple[Bundle, Dict[str, Any]]:
    """Fill a bundle with zlib-compressed token items; returns it and its metadata."""
    from safetensors.numpy import load_file

    from .extract_tokens import read_token_index

    tokens = Path(args.tokens or config["data"]["tokens"])
    rows = read_token_index(tokens)
    valid = [r for r in rows if r["split"] == "valid"]
    train = [r for r in rows if r["split"] == "train"]
    order = [valid[i] for i in seeded_order(len(valid), args.seed)[:args.valid_clips]]
    order += [train[i] for i in seeded_order(len(train), args.seed)]
    bundle, shards, frames = Bundle("tokens"), {}, {"train": 0, "valid": 0}
    if (tokens / CODEC_REFERENCE).is_file():
        bundle.extras[CODEC_REFERENCE] = (tokens / CODEC_REFERENCE).read_bytes()
    for row in order:
        if row["shard"] not in shards:
            shards[row["shard"]] = load_file(str(tokens / row["shard"]))
        codes = shards[row["shard"]][row["key"]].astype("<i2")
        payload = zlib.compress(codes.tobytes(), 9)
        if not bundle.add(payload, {"caption": row["caption"], "split": row["split"], "shape": list(codes.shape)},
                          budget):
            break
        frames[row["split"]] += int(codes.shape[-1])
    return bundle, {"tokens": str(tokens), "frames": frames}


def pack(args: argparse.Namespace) -> int:
    if not 6 <= args.kbps <= 256 or not args.max_seconds > 0 or args.valid_clips < 0:
        raise PlanError("--kbps must lie in [6, 256] (Opus), --max-seconds be positive and --valid-clips >= 0")
    config = load_recipe_config(args.task, args.config, args.overrides)
    budget = int(args.budget_mib * MIB) if args.budget_mib is not None else default_budget(args.out, args.also)
    filler = pack_tokens if args.task == "lm" else pack_audio
    bundle, meta = filler(args, config, budget)
    if not any(json.loads(line)["split"] == "train" for line in bundle.lines):
        raise PlanError(f"a budget of {budget / 1024:.0f} KiB holds no training item; raise --budget-mib "
                        f"or lower --valid-clips / --max-seconds")
    meta = {"format": FORMAT, "version": VERSION, "kind": bundle.kind, "task": args.task, "seed": args.seed,
            "budget": budget, **meta}
    size = bundle.write(args.out, meta, budget)
    splits = [json.loads(line)["split"] for line in bundle.lines]
    counts = {s: splits.count(s) for s in ("train", "valid")}
    print(f"wrote {args.out}: {size / MIB:.2f} MiB of {budget / MIB:.2f} MiB, "
          f"{counts['train']} training and {counts['valid']} validation items")
    return 0


# ------------------------------------------------------------------------------ unpack


def unpack_audio(meta: Dict[str, Any], rows: List[Dict[str, Any]], blob: bytes, out: Path) -> int:
    """Decode every clip to 16-bit WAV and write ``manifest.jsonl``; returns the number of clips."""
    entries = []
    (out / "audio").mkdir(parents=True, exist_ok=True)
    for number, row in enumerate(rows):
        wav, rate = sf.read(io.BytesIO(blob[row["offset"]: row["offset"] + row["length"]]), dtype="float32")
        name = f"audio/{number:06d}.wav"
        sf.write(out / name, wav, rate, subtype="PCM_16")
        fields = {k: v for k, v in row.items() if k not in ("offset", "length")}
        entries.append(ManifestEntry.from_json({**fields, "path": name, "duration": len(wav) / rate,
                                                "sample_rate": rate}, f"bundle item {number}"))
    return write_manifest(out / "manifest.jsonl", entries)


def unpack_tokens(rows: List[Dict[str, Any]], blob: bytes, extras: Dict[str, bytes], out: Path) -> int:
    """Write safetensors shards and ``index.jsonl`` as ``extract_tokens`` does; returns the item count."""
    import torch
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    index = []
    for start in range(0, len(rows), SHARD_ITEMS):
        shard, tensors = f"shard-r0-{start // SHARD_ITEMS:05d}.safetensors", {}
        for i, row in enumerate(rows[start:start + SHARD_ITEMS]):
            raw = zlib.decompress(blob[row["offset"]: row["offset"] + row["length"]])
            codes = np.frombuffer(raw, dtype="<i2").reshape(row["shape"])
            tensors[f"item{i}"] = torch.from_numpy(codes.astype(np.int16))
            index.append({"shard": shard, "key": f"item{i}", "caption": row["caption"],
                          "frames": int(codes.shape[-1]), "split": row["split"]})
        save_file(tensors, str(out / shard))
    if CODEC_REFERENCE in extras:
        (out / CODEC_REFERENCE).write_bytes(extras[CODEC_REFERENCE])
    (out / "index.jsonl").write_text("".join(json.dumps(row) + "\n" for row in index))
    return len(index)


def unpack(args: argparse.Namespace) -> int:
    meta, rows, blob, extras = read_bundle(args.bundle)
    marker = args.out / META
    if marker.is_file() and json.loads(marker.read_text()) == meta:
        print(f"{args.out} already holds this bundle")
        return 0
    if args.out.exists() and any(args.out.iterdir()):
        raise PlanError(f"{args.out} is not empty; unpack into a new folder")
    count = unpack_audio(meta, rows, blob, args.out) if meta["kind"] == "audio" else unpack_tokens(rows, blob, extras, args.out)
    marker.write_text(json.dumps(meta, indent=1) + "\n")  # last: a complete folder only
    what = "manifest.jsonl" if meta["kind"] == "audio" else "index.jsonl"
    print(f"unpacked {count} items into {args.out} ({what})")
    return 0


# ------------------------------------------------------------------------------ train


@dataclass
class Chunk:
    """One training chunk: its command line and how it starts."""

    command: List[str]
    start: str  # "resume", "warm start from DIR" or "from scratch"


def chunk_command(task: str, data: Path, output: Path, minutes: float, precision: str = "auto",
                  init: Optional[Path] = None, config: Optional[Path] = None, overrides: Sequence[str] = (),
                  accelerator: str = "auto", devices: str = "1", smoke: bool = False) -> Chunk:
    """The ``recipes.train`` command of one chunk: resume the run in ``output`` if it has
    ``last.ckpt``, else warm-start from its ``best/`` (weights brought back alone) or ``init``."""
    if task == "lm":
        data_settings = [f"data.tokens={data}"]
    else:  # the bundle's valid split serves validation: no other manifest travels
        data_settings = [f"data.manifest={data / 'manifest.jsonl'}", "data.valid_manifest=null"]
    command = [sys.executable, "-m", "recipes.train", task, "--output", str(output), "--max-time", f"{minutes:g}",
               "--accelerator", accelerator, "--devices", str(devices)]
    command += ["--smoke"] if smoke else []
    command += ["--config", str(config)] if config else []
    settings = [*data_settings, f"trainer.precision={precision}", *overrides]
    if (output / "checkpoints" / "last.ckpt").is_file():
        command.append("--resume")
        start = "resume"
    else:
        warm = output / "best" if (output / "best").is_dir() else init
        if warm is not None:
            settings.append(f"init={warm}")
        start = f"warm start from {warm}" if warm is not None else "from scratch"
    return Chunk(command + ["--set", *settings], start)


def train(args: argparse.Namespace) -> int:
    if not args.minutes > 0:
        raise PlanError(f"--minutes must be positive, got {args.minutes}")
    marker = args.data / ("index.jsonl" if args.task == "lm" else "manifest.jsonl")
    if not marker.is_file():
        raise PlanError(f"{marker} not found: unpack the bundle into {args.data} first")
    chunk = chunk_command(args.task, args.data, args.output, args.minutes, args.precision, args.init, args.config,
                          args.overrides, args.accelerator, args.devices, args.smoke)
    print(f"chunk of at most {args.minutes:g} min, {chunk.start}:\n  {' '.join(chunk.command)}", flush=True)
    if args.dry_run:
        return 0
    return subprocess.run(chunk.command, cwd=ROOT).returncode


# ------------------------------------------------------------------------------ collect


def half_weights(source: Path, target: Path) -> List[str]:
    """Copy a safetensors file with its float tensors in fp16; returns the names kept at their own
    precision because fp16 cannot hold them (values beyond its range)."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    tensors, kept = {}, []
    with safe_open(str(source), "pt") as handle:
        metadata = handle.metadata()
        for name in handle.keys():
            tensor = handle.get_tensor(name)
            if tensor.is_floating_point() and tensor.dtype != torch.float16:
                half = tensor.half()
                if torch.isfinite(half).all() or not torch.isfinite(tensor).all():
                    tensor = half
                else:
                    kept.append(name)
            tensors[name] = tensor.contiguous()
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(target), metadata=metadata)
    return kept


STATE_FILES = ("config.yaml", "csv/metrics.csv", "replicas.json")
REPORT_RESERVE = 4096  # bytes held for collected.json


def collect(args: argparse.Namespace) -> int:
    run, out, limit = args.run, args.out, int(args.limit_mb * 1_000_000)
    best, last = run / "best", run / "checkpoints" / "last.ckpt"
    if not best.is_dir() or not any(best.rglob("*.safetensors")):
        raise PlanError(f"{best} holds no weights: the chunk ended before its first validation "
                        f"(lower trainer.val_check_interval)")
    if out.exists() and any(out.iterdir()):
        raise PlanError(f"{out} is not empty; collect into a new folder")
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    kept_precision: List[str] = []
    for path in sorted(p for p in best.rglob("*") if p.is_file()):
        target = staging / "best" / path.relative_to(best)
        if path.suffix == ".safetensors":
            kept_precision += half_weights(path, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    for name in STATE_FILES:
        if (run / name).is_file():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(run / name, staging / name)
    size = path_bytes(staging) + REPORT_RESERVE
    if size > limit:
        shutil.rmtree(staging)
        raise PlanError(f"the fp16 weights and run state alone are {size / 1e6:.1f} MB, over --limit-mb "
                        f"{args.limit_mb:g}")
    report: Dict[str, Any] = {"run": str(run), "limit_bytes": limit, "fp32_kept": kept_precision}
    if last.is_file() and size + last.stat().st_size <= limit:
        (staging / "checkpoints").mkdir()
        shutil.copy2(last, staging / "checkpoints" / "last.ckpt")
        report["resume"] = "checkpoints/last.ckpt: the next chunk resumes (optimizer state and step kept)"
    else:
        why = (f"last.ckpt ({last.stat().st_size / 1e6:.1f} MB with optimizer state) does not fit"
               if last.is_file() else "the run has no last.ckpt")
        report["resume"] = f"fp16 weights only ({why}): the next chunk warm-starts from best/"
        print(f"note: {report['resume']}", file=sys.stderr)
    (staging / "collected.json").write_text(json.dumps(report, indent=2) + "\n")
    if out.exists():
        out.rmdir()
    staging.replace(out)
    print(f"collected {out}: {path_bytes(out) / 1e6:.2f} MB of {limit / 1e6:g} MB")
    return 0


# ------------------------------------------------------------------------------ command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m recipes.gpu_plan", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", required=True)

    p = steps.add_parser("pack", help="bundle the next chunk's data within a byte budget (here)")
    p.add_argument("task", choices=["codec", "vocoder", "lm"])
    p.add_argument("--out", type=Path, required=True, help="the bundle file to write (a .tar)")
    p.add_argument("--manifest", help="corpus manifest (codec, vocoder; default: the recipe's data.manifest)")
    p.add_argument("--tokens", help="token folder (lm; default: the recipe's data.tokens)")
    p.add_argument("--config", type=Path, help="the recipe config the chunk trains with (for data.exclude)")
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--budget-mib", type=float, help="bundle size limit (default: 60 MiB less what else is sent)")
    p.add_argument("--also", type=Path, nargs="*", default=[], help="other paths sent with the code")
    p.add_argument("--seed", type=int, default=0, help="draws the sample; use a new one per chunk")
    p.add_argument("--kbps", type=float, default=16.0, help="Opus bitrate")
    p.add_argument("--max-seconds", type=float, default=10.0, help="at most this much of each training clip")
    p.add_argument("--valid-clips", type=int, default=32, help="validation items packed first")

    p = steps.add_parser("unpack", help="turn a bundle into a corpus or token folder (on the GPU machine)")
    p.add_argument("bundle", type=Path)
    p.add_argument("--out", type=Path, required=True)

    p = steps.add_parser("train", help="run one resumable chunk of training")
    p.add_argument("task", choices=["codec", "vocoder", "lm"])
    p.add_argument("--data", type=Path, required=True, help="the unpacked folder")
    p.add_argument("--output", type=Path, required=True, help="run folder (resumed when it has last.ckpt)")
    p.add_argument("--minutes", type=float, default=8.0, help="training time of this chunk")
    p.add_argument("--precision", default="auto", help="trainer.precision: auto, bf16-mixed, 32-true")
    p.add_argument("--init", type=Path, help="saved weights to start from when there is nothing to resume")
    p.add_argument("--config", type=Path)
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--devices", default="1")
    p.add_argument("--smoke", action="store_true", help="the tiny smoke model (to try the plan on a CPU)")
    p.add_argument("--dry-run", action="store_true", help="print the command only")

    p = steps.add_parser("collect", help="write what to bring back, within a size limit")
    p.add_argument("run", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--limit-mb", type=float, default=16.0)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    step = {"pack": pack, "unpack": unpack, "train": train, "collect": collect}[args.step]
    try:
        return step(args)
    except (PlanError, RecipeConfigError, ManifestError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
