"""Evaluation report of the shipped codec and vocoder on held-out real audio.

    python -m recipes.evaluate --manifest data/corpus/manifest.jsonl --out reports/
    python -m recipes.evaluate --manifest ... --codec DIR --vocoder DIR --runs runs/codec runs/vocoder

Writes ``OUT/README.md`` (tables), ``OUT/results.json`` (every number) and PNG figures:

* **codec** at every bitrate the model offers (1 and 2 kbps for the default), side by side with Opus
  at 6 and 12 kbps and Codec2 at 2.4 kbps on the same clips (each skipped with a note when its
  Debian tool, ``opus-tools`` or ``codec2``, is missing): PESQ-wb and STOI for speech, mel distance,
  multi-scale STFT distance and SI-SDR for everything; quality against bitrate; spectrograms;
* **vocoder** copy synthesis from the mel: quality against phase-refinement iterations for the
  three starts of ``Vocoder.decode`` (the network's phase, PGHI, random phase; all with the
  network's amplitude and mel-consistent refinement), beside plain fast Griffin-Lim with the
  amplitude fixed at the mel's pseudo-inverse (from random phase and from PGHI), with synthesis time;
* **learning curves** from the CSV logs of the training runs given with ``--runs``.

Clip sets (fixed, drawn by a hash of the file path so reruns score the same clips), each reported
separately. Three whole speech sources are held out of the codec's training (:data:`HELD_OUT_SPEECH`,
which the codec recipes exclude): warzone2100's English voice messages and briefings, fillets-ng's
Czech character dialogue (Vorbis at 22 kHz) and Asterisk's Russian telephone prompts (G.722).
``speech, in-domain`` is the validation split of the training speech sources (other recordings of
voices seen in training); ``music`` and ``effects`` are validation splits. The **level sweep**
scores the codec on the held-out speech at several input levels (RMS in dBFS, peak-limited).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
import torch
from tqdm.auto import tqdm

from codec import Codec
from vocoder import Vocoder
from vocoder.audio import normalize_loudness, prepare_waveform, resample
from vocoder.model import PHASE_STARTS
from vocoder.phase import pghi_phase
from vocoder.metrics import (MetricAverager, mel_distance, optional_metric, pesq_wideband, si_sdr, stft_distance,
                             stoi)

from .config import RecipeConfigError, load_yaml
from .data import ManifestEntry, read_manifest, selected

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class ClipSet:
    """A fixed selection of manifest entries: ``split`` (None: any), recording-id prefixes."""

    name: str
    include: Tuple[str, ...]
    split: Optional[str]
    speech: bool
    count: int
    min_seconds: float = 2.0


# Whole sources the codec never trains on (the recipes' data.exclude lists them; a test checks it).
HELD_OUT_SPEECH = {
    "speech, held out: warzone2100 (English, game voice messages)": (
        "warzone2100-data/audio/memressp", "warzone2100-data/audio/tutorial", "warzone2100-data/sequenceaudio"),
    "speech, held out: fillets-ng (Czech, character dialogue)": ("fillets-ng-data-cs/",),
    "speech, held out: Asterisk ru (Russian, G.722 telephone prompts)": ("asterisk-core-sounds-ru-g722/",),
}
HELD_OUT_SOURCES = ("warzone2100-data", "fillets-ng-data-cs", "asterisk-core-sounds-ru-g722")

CLIP_SETS = tuple(ClipSet(name, include, None, True, 24, 1.5) for name, include in HELD_OUT_SPEECH.items()) + (
    ClipSet("speech, in-domain (validation split)", ("tuxpaint-stamps-default/", "flight-of-the-amazon-queen/",
                                                     "asterisk-core-sounds-fr-g722/"), "valid", True, 24),
    ClipSet("music", ("widelands-data/music", "wesnoth", "warzone2100-music"), "valid", False, 8),
    ClipSet("effects", ("ufoai-sound/", "widelands-data/sound", "wordwarvi-sound/", "hydrogen-drumkits",
                        "megaglest-data/tilesets", "sonic-pi-samples/"), "valid", False, 12, 1.0),
)
LEVELS_DB = (-35.0, -25.0, -20.0, -15.0, -10.0)  # input RMS levels of the level sweep
LEVEL_PEAK = 0.99


def choose_clips(manifest: Path, clip_set: ClipSet, max_seconds: float) -> List[Tuple[str, torch.Tensor]]:
    """``(name, [1, T] audio at 16 kHz)`` for the set, at most ``max_seconds`` each (from the start)."""
    entries = [e for e in read_manifest(manifest, clip_set.split)
               if selected(e, clip_set.include) and e.duration >= clip_set.min_seconds
               and (not clip_set.speech or "_desc" in e.recording_id or e.source != "tuxpaint-stamps-default")]
    entries.sort(key=lambda e: hashlib.sha1(e.path.encode()).hexdigest())
    clips = []
    for entry in entries[: clip_set.count]:
        clips.append((entry.path, _read(manifest.parent / entry.path, entry, max_seconds)))
    return clips


def _read(path: Path, entry: ManifestEntry, max_seconds: float) -> torch.Tensor:
    data, rate = sf.read(str(path), frames=int(max_seconds * entry.sample_rate), dtype="float32", always_2d=True)
    return prepare_waveform(data.T, rate, SAMPLE_RATE)[0]


# ------------------------------------------------------------------------------- classical codecs


def _run(command: Sequence[str]) -> None:
    subprocess.run(list(command), check=True, capture_output=True)


def opus(kbps: float) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
    """Opus at ``kbps`` through Debian's ``opusenc``/``opusdec`` (None when they are missing)."""
    if not (shutil.which("opusenc") and shutil.which("opusdec")):
        return None

    def code(wav: torch.Tensor) -> torch.Tensor:
        with tempfile.TemporaryDirectory() as tmp:
            src, bits, out = Path(tmp, "in.wav"), Path(tmp, "x.opus"), Path(tmp, "out.wav")
            sf.write(src, wav[0].numpy(), SAMPLE_RATE, subtype="PCM_16")
            _run(["opusenc", "--quiet", "--bitrate", str(kbps), str(src), str(bits)])
            _run(["opusdec", "--quiet", "--rate", str(SAMPLE_RATE), str(bits), str(out)])
            data, _ = sf.read(str(out), dtype="float32", always_2d=True)
        return torch.from_numpy(data.T[:1].copy())
    return code


def codec2(mode: int) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
    """Codec2 (8 kHz narrow-band speech codec) at ``mode`` bit/s via ``c2enc``/``c2dec``."""
    if not (shutil.which("c2enc") and shutil.which("c2dec")):
        return None

    def code(wav: torch.Tensor) -> torch.Tensor:
        narrow = resample(wav, SAMPLE_RATE, 8000)[0].clamp(-1, 1)
        with tempfile.TemporaryDirectory() as tmp:
            raw, bits, out = Path(tmp, "in.raw"), Path(tmp, "x.bit"), Path(tmp, "out.raw")
            raw.write_bytes((narrow.numpy() * 32767).astype("<i2").tobytes())
            _run(["c2enc", str(mode), str(raw), str(bits)])
            _run(["c2dec", str(mode), str(bits), str(out)])
            decoded = np.frombuffer(out.read_bytes(), dtype="<i2").astype(np.float32) / 32768
        return align(wav, resample(torch.from_numpy(decoded.copy())[None], 8000, SAMPLE_RATE))
    return code


def align(reference: torch.Tensor, estimate: torch.Tensor, max_lag: int = SAMPLE_RATE // 20) -> torch.Tensor:
    """``estimate`` shifted by the lag (at most ``max_lag`` samples, either way) that best matches
    ``reference`` by cross-correlation, padded with zeros: a codec's algorithmic delay is not an error."""
    n = min(reference.shape[-1], estimate.shape[-1])
    size = 1 << (2 * n - 1).bit_length()
    spectrum = torch.fft.rfft(reference[..., :n], size) * torch.fft.rfft(estimate[..., :n], size).conj()
    correlation = torch.fft.irfft(spectrum, size)[0]
    lags = torch.cat([correlation[: max_lag + 1], correlation[-max_lag:]])
    best = int(lags.argmax())  # correlation[k] peaks where estimate[n] = reference[n + k]
    lag = -(best if best <= max_lag else best - 2 * max_lag - 1)  # > 0: the estimate lags behind
    if lag > 0:
        return torch.nn.functional.pad(estimate[..., lag:], (0, lag))
    return torch.nn.functional.pad(estimate, (-lag, 0))[..., : estimate.shape[-1]]


# ----------------------------------------------------------------------------------------- scoring


def score(reference: torch.Tensor, estimate: torch.Tensor, speech: bool, metrics: MetricAverager) -> None:
    """Add one clip's metrics (PESQ and STOI for speech only) to ``metrics``."""
    length = min(reference.shape[-1], estimate.shape[-1])
    ref, est = reference[..., :length], estimate[..., :length].float()
    metrics.add("mel_distance", mel_distance(ref, est, SAMPLE_RATE))
    metrics.add("stft_distance", stft_distance(ref, est))
    metrics.add("si_sdr", si_sdr(ref, est))
    if speech:
        metrics.add("pesq", optional_metric(pesq_wideband, ref, est, SAMPLE_RATE))
        metrics.add("stoi", stoi(ref, est, SAMPLE_RATE))


def evaluate_levels(codec: Codec, clips: Dict[ClipSet, list], levels: Sequence[float] = LEVELS_DB
                    ) -> Dict[str, Dict[str, Dict[str, float]]]:
    """The codec at its highest bitrate on each held-out speech set, the input set to each level and
    coded as a user's file is (``compress``, which normalises the level and restores it, then
    ``decompress``): ``{set name: {"-20 dBFS": {metric: mean}}}``, each clip scored against its level-set self."""
    results: Dict[str, Dict[str, Dict[str, float]]] = {}
    for clip_set, items in clips.items():
        if clip_set.name not in HELD_OUT_SPEECH:
            continue
        results[clip_set.name] = {}
        for level in levels:
            metrics = MetricAverager()
            for _, wav in tqdm(items, desc=f"{level:g} dBFS on {clip_set.name}", leave=False):
                wav = normalize_loudness(wav, level, LEVEL_PEAK)
                score(wav, codec.decompress(codec.compress(wav, SAMPLE_RATE))[0][0], True, metrics)
            results[clip_set.name][f"{level:g} dBFS"] = metrics.means()
    return results


def evaluate_codec(codec: Codec, clips: Dict[ClipSet, list]) -> Dict[str, Dict[str, Dict[str, float]]]:
    """``{set name: {system: {metric: mean}}}`` for every codec bitrate and classical codec."""
    systems: Dict[str, Tuple[float, Callable[[torch.Tensor], torch.Tensor]]] = {}
    for count in codec.allowed_num_codebooks:
        kbps = codec.bitrate_for(count) / 1000
        systems[f"GRVQ codec {kbps:g} kbps"] = (
            kbps, lambda wav, k=count: codec.decode(codec.encode(wav, SAMPLE_RATE, num_codebooks=k))[0])
    for name, kbps, build in (("Opus 6 kbps", 6.0, lambda: opus(6)), ("Opus 12 kbps", 12.0, lambda: opus(12)),
                              ("Codec2 2.4 kbps", 2.4, lambda: codec2(2400))):
        code = build()
        if code is not None:
            systems[name] = (kbps, code)
    results: Dict[str, Dict[str, Dict[str, float]]] = {}
    for clip_set, items in clips.items():
        results[clip_set.name] = {}
        for system, (kbps, code) in systems.items():
            metrics = MetricAverager()
            for _, wav in tqdm(items, desc=f"{system} on {clip_set.name}", leave=False):
                score(wav, code(wav), clip_set.speech, metrics)
            results[clip_set.name][system] = {"kbps": kbps, **metrics.means()}
    return results


# The whole refinement curve (iteration counts x starts) runs on the first held-out speech set; the
# other speech sets get the default decode and the Griffin-Lim baselines.
CURVE_SET = next(iter(HELD_OUT_SPEECH))
DEFAULT_METHOD = "pghi start, 8 it"


def evaluate_vocoder(vocoder: Vocoder, clips: Dict[ClipSet, list], iterations: Sequence[int]
                     ) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Copy synthesis from the mel on the speech sets: ``{set: {method: metrics + rtf}}``.

    Every start goes through ``Vocoder.decode(mel, refine=k, start=...)``, so the curve measures the
    API users call. ``rtf`` is synthesis wall-clock seconds per second of audio with torch on one
    thread, the mel analysis excluded.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _evaluate_vocoder(vocoder, clips, iterations)
    finally:
        torch.set_num_threads(threads)


def _evaluate_vocoder(vocoder: Vocoder, clips: Dict[ClipSet, list], iterations: Sequence[int]
                      ) -> Dict[str, Dict[str, Dict[str, float]]]:
    c = vocoder.config.mel
    refiner, mel_frontend = vocoder.refiner, vocoder.frontend
    results: Dict[str, Dict[str, Dict[str, float]]] = {}
    for clip_set, items in clips.items():
        if not clip_set.speech:
            continue
        curve = clip_set.name == CURVE_SET
        methods: Dict[str, MetricAverager] = {}
        seconds: Dict[str, float] = {}
        audio_seconds = 0.0
        for _, wav in tqdm(items, desc=f"vocoder on {clip_set.name}", leave=False):
            wav = wav[..., : wav.shape[-1] // c.hop_length * c.hop_length]
            audio_seconds += wav.shape[-1] / SAMPLE_RATE
            mel = vocoder.mel(wav, SAMPLE_RATE)
            prior = mel_frontend.pseudo_inverse(mel)

            def run(name: str, synthesise: Callable[[], torch.Tensor]) -> None:
                start = time.perf_counter()
                out = synthesise()
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
                score(wav, out[0], True, methods.setdefault(name, MetricAverager()))

            if curve:
                for k in iterations:
                    for start in PHASE_STARTS:
                        run(f"{start} start, {k} it", lambda k=k, start=start: vocoder.decode(mel, refine=k, start=start))
            else:
                run(DEFAULT_METHOD, lambda: vocoder.decode(mel))
            generator = torch.Generator().manual_seed(0)
            run("Griffin-Lim 32 it (fixed amplitude, random start)",
                lambda: refiner(torch.exp(prior), None, 32, generator=generator))
            run("PGHI + Griffin-Lim 32 it (fixed amplitude)",
                lambda: refiner(torch.exp(prior), pghi_phase(prior, c.win_length, c.hop_length), 32))
        results[clip_set.name] = {name: {**m.means(), "rtf": seconds[name] / audio_seconds}
                                  for name, m in methods.items()}
    return results


# ----------------------------------------------------------------------------------------- figures


SPEECH_METRICS = ("val/pesq", "val/stoi", "val/mel_distance")


HOURS = ("cpu_hours", "gpu_hours")
MAX_STEP_OFFSET = 8  # steps between a compute-time row and the validation it belongs to (resumes add one each)


def _run_config(run: Path) -> Dict[str, Dict[str, Any]]:
    """The sections of the run's saved ``config.yaml``; empty where it has none or it is unreadable."""
    try:
        config = load_yaml(run / "config.yaml")
    except RecipeConfigError:
        return {}
    return {name: section for name, section in config.items() if isinstance(section, dict)}


def read_curves(runs: Sequence[Path], metrics: Sequence[str]) -> Dict[str, List[Dict[str, float]]]:
    """Per run, the validation points of its CSV log (``csv/metrics.csv``, or ``metrics.csv`` as a device
    run exports it): ``step``, ``cpu_hours`` where logged, ``examples`` (steps times the batch size of the
    run's ``config.yaml``) where known, and ``metrics``."""
    import csv

    curves: Dict[str, List[Dict[str, float]]] = {}
    for run in map(Path, runs):
        path = next((p for p in (run / "csv" / "metrics.csv", run / "metrics.csv") if p.is_file()), None)
        if path is None:
            continue
        rows: Dict[int, Dict[str, float]] = {}
        with path.open() as handle:
            for row in csv.DictReader(handle):
                step = int(float(row["step"]))
                for key in (*HOURS, *metrics):
                    if row.get(key):
                        rows.setdefault(step, {"step": step})[key] = float(row[key])
        # ComputeTime logs at the trainer's step. Lightning logs the validation one step before it, or after
        # it in a run resumed mid-epoch, one step further after each such resume: pair the nearest.
        for step, row in rows.items():
            if metrics[-1] in row:
                continue
            near = next((rows[s] for d in range(1, MAX_STEP_OFFSET + 1) for s in (step - d, step + d)
                         if metrics[-1] in rows.get(s, {})), None)
            for key in HOURS:
                if near is not None and key in row:
                    near.setdefault(key, row[key])
        points = [r for _, r in sorted(rows.items()) if metrics[-1] in r]
        config = _run_config(run)
        accelerator = config.get("trainer", {}).get("accelerator")
        if any("gpu_hours" in p for p in rows.values()) or accelerator in ("gpu", "cuda"):
            for point in points:  # an accelerator run's CPU time is not its compute
                point.pop("cpu_hours", None)
        batch = config.get("data", {}).get("batch_size")
        if isinstance(batch, int) and batch > 0:
            for point in points:
                point["examples"] = (point["step"] + 1) * batch
        curves[run.name] = points
    return curves


def curves_figure(curves: Dict[str, List[Dict[str, float]]], metrics: Sequence[str], path: Path,
                  what: str = "") -> None:
    """One panel per metric, validation value of every run on one x-axis: CPU-hours when every run
    logged them (a point that came after the last log, as when a run is stopped, is left out), else
    training examples seen (steps times batch size) when every run has a batch size, else steps. A run
    on a GPU thus never shares an axis with CPU-hours."""
    import matplotlib.pyplot as plt

    x_key = next(k for k in ("cpu_hours", "examples", "step")
                 if all(any(k in p for p in points) for points in curves.values()))
    label = {"cpu_hours": "CPU-hours", "examples": "training examples seen", "step": "step"}[x_key]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.7 * len(metrics), 3.8), squeeze=False)
    handles = {}
    for index, (name, points) in enumerate(curves.items()):
        for axis, metric in zip(axes[0], metrics):
            shown = [p for p in points if metric in p and x_key in p]
            if shown:  # one colour per run in every panel, one legend entry per run
                handles[name], = axis.plot([p[x_key] for p in shown], [p[metric] for p in shown], marker="o",
                                           markersize=3, color=f"C{index % 10}")
            axis.set_title(metric + what)
            axis.set_xlabel(label)
            if x_key == "examples":
                axis.set_xscale("log")
    # as many legend columns as fit the figure's width (about 1.5 inches each), rows below the panels
    columns = max(1, min(len(handles), int(fig.get_figwidth() // 1.5)))
    rows = -(-len(handles) // columns)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=columns, fontsize=8)
    fig.tight_layout(rect=(0, 0.03 + 0.055 * rows, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def curves_section(curves: Dict[str, List[Dict[str, float]]], intro: str,
                   describe: Callable[[Dict[str, float]], str]) -> List[str]:
    """A report's "Learning curves" section: ``intro``, the figure, and every run's points, each placed
    by CPU-hours and step (step alone where the log has no CPU time) and measured as ``describe`` words it."""

    def where(point: Dict[str, float]) -> str:
        hours = "".join(f"{point[k]:.2f} {k[:3].upper()}-h / " for k in HOURS if k in point)
        return f"{hours}step {point['step']:.0f}"

    lines = ["## Learning curves", "", intro, "", "![learning curves](learning_curves.png)", ""]
    lines += [f"- {name}: " + ", ".join(f"{where(p)}: {describe(p)}" for p in points) for name, points in curves.items()]
    return lines + [""]


def learning_curves(runs: Sequence[Path], out: Path) -> Dict[str, List[Dict[str, float]]]:
    """Speech validation metrics of codec and vocoder runs against CPU-hours; ``learning_curves.png``."""
    curves = read_curves(runs, SPEECH_METRICS)
    curves_figure(curves, SPEECH_METRICS, out / "learning_curves.png", " (held-out speech)")
    return curves


def bitrate_figure(codec_results: Dict[str, Dict[str, Dict[str, float]]], out: Path) -> None:
    import matplotlib.pyplot as plt

    speech = [name for name in codec_results if name.startswith("speech")]
    fig, axes = plt.subplots(len(speech), 2, figsize=(10, 3.6 * len(speech)), squeeze=False)
    for row, set_name in enumerate(speech):
        for col, metric in enumerate(("pesq", "stoi")):
            axis = axes[row][col]
            for system, values in codec_results[set_name].items():
                if metric in values:
                    axis.scatter(values["kbps"], values[metric], s=40)
                    axis.annotate(system, (values["kbps"], values[metric]), fontsize=7,
                                  textcoords="offset points", xytext=(4, 4))
            axis.set_xscale("log")
            axis.set_xlabel("kbit/s")
            axis.set_title(f"{metric.upper()}: {set_name}")
    fig.tight_layout()
    fig.savefig(out / "quality_vs_bitrate.png", dpi=90)
    plt.close(fig)


def refinement_figure(vocoder_results: Dict[str, Dict[str, Dict[str, float]]], iterations: Sequence[int],
                      out: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(vocoder_results), figsize=(6 * len(vocoder_results), 3.8), squeeze=False)
    for axis, (set_name, methods) in zip(axes[0], vocoder_results.items()):
        for start in (f"{name} start" for name in PHASE_STARTS):
            points = [(methods[f"{start}, {k} it"]["rtf"], methods[f"{start}, {k} it"].get("pesq", np.nan))
                      for k in iterations if f"{start}, {k} it" in methods]
            if points:
                axis.plot(*zip(*points), marker="o", label=start)
        for name, values in methods.items():
            if "fixed amplitude" in name:
                axis.scatter(values["rtf"], values.get("pesq", np.nan), marker="x", s=60, label=name)
        axis.set_xscale("log")
        axis.set_xlabel("synthesis real-time factor (1 CPU thread)")
        axis.set_ylabel("PESQ-wb")
        axis.set_title(f"{set_name}: {', '.join(map(str, iterations))} iterations", fontsize=9)
        axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "refinement_curve.png", dpi=90)
    plt.close(fig)


def spectrogram_figure(codec: Codec, clips: List[Tuple[str, torch.Tensor]], out: Path) -> None:
    import matplotlib.pyplot as plt

    from vocoder.spectral import MelConfig, MelSpectrogram

    mel = MelSpectrogram(MelConfig())
    low = codec.allowed_num_codebooks[0]
    rows = [("original", lambda w: w), (f"codec {codec.bitrate / 1000:g} kbps",
                                        lambda w: codec.decode(codec.encode(w, SAMPLE_RATE))[0]),
            (f"codec {codec.bitrate_for(low) / 1000:g} kbps",
             lambda w: codec.decode(codec.encode(w, SAMPLE_RATE, num_codebooks=low))[0])]
    code = opus(6)
    if code is not None:
        rows.append(("Opus 6 kbps", code))
    fig, axes = plt.subplots(len(rows), len(clips), figsize=(4.5 * len(clips), 2.2 * len(rows)), squeeze=False)
    for col, (name, wav) in enumerate(clips):
        for row, (label, system) in enumerate(rows):
            image = mel(system(wav).float())[0].numpy()
            axes[row][col].imshow(image, origin="lower", aspect="auto", cmap="inferno", vmin=-11.5, vmax=2)
            axes[row][col].set_title(f"{label}: {Path(name).stem[:28]}", fontsize=8)
            axes[row][col].axis("off")
    fig.tight_layout()
    fig.savefig(out / "spectrograms.png", dpi=80)
    plt.close(fig)


# ------------------------------------------------------------------------------------------ report


def _table(results: Dict[str, Dict[str, float]], columns: Sequence[Tuple[str, str, str]]) -> List[str]:
    lines = ["| system | " + " | ".join(title for title, _, _ in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for system, values in results.items():
        cells = [format(values[key], fmt) if key in values else "-" for _, key, fmt in columns]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return lines


CODEC_COLUMNS = (("kbit/s", "kbps", "g"), ("PESQ-wb", "pesq", ".2f"), ("STOI", "stoi", ".3f"),
                 ("mel dist.", "mel_distance", ".3f"), ("STFT dist.", "stft_distance", ".3f"),
                 ("SI-SDR dB", "si_sdr", ".1f"))
VOCODER_COLUMNS = (("PESQ-wb", "pesq", ".2f"), ("STOI", "stoi", ".3f"), ("mel dist.", "mel_distance", ".3f"),
                   ("RTF (1 thread)", "rtf", ".4f"))
LEVEL_COLUMNS = (("PESQ-wb", "pesq", ".2f"), ("STOI", "stoi", ".3f"), ("mel dist.", "mel_distance", ".3f"))


def write_report(out: Path, results: dict, clip_counts: Dict[str, int], notes: List[str]) -> None:
    lines = ["# Evaluation report", "",
             "Written by `python -m recipes.evaluate` (see its docstring for the clip sets). "
             "All numbers from one run on this machine; every system scored on the same clips. The text-to-audio "
             "model has its own report: [generation/README.md](generation/README.md) "
             "(`python -m recipes.evaluate_generation`).", ""]
    lines += [f"- {name}: {count} clips" for name, count in clip_counts.items()]
    lines += [f"- note: {note}" for note in notes]
    if "codec" in results:
        lines += ["", "## Codec", "", "![quality against bitrate](quality_vs_bitrate.png)", ""]
        for set_name, systems in results["codec"].items():
            lines += [f"### {set_name}", ""] + _table(systems, CODEC_COLUMNS) + [""]
        lines += ["![spectrograms](spectrograms.png)", ""]
    if "levels" in results:
        lines += ["## Input level sweep (codec at its highest bitrate, held-out speech)", "",
                  "Each clip set to the RMS level in dBFS (scaled down where its peak would pass "
                  f"{LEVEL_PEAK}), coded through `compress`/`decompress` (which bring the input to the "
                  "corpus level and restore its own level after decoding) and scored against itself at that level.", ""]
        for set_name, levels in results["levels"].items():
            lines += [f"### {set_name}", ""] + _table(levels, LEVEL_COLUMNS) + [""]
    if "vocoder" in results:
        lines += ["## Vocoder copy synthesis (from the 80-band mel)", "",
                  "Mel-consistent refinement from three starts, and fast Griffin-Lim with the amplitude "
                  "fixed at the mel's pseudo-inverse. RTF: synthesis wall-clock seconds per audio second with torch on one "
                  "thread (mel analysis excluded).", "", "![refinement](refinement_curve.png)", ""]
        for set_name, methods in results["vocoder"].items():
            lines += [f"### {set_name}", ""] + _table(methods, VOCODER_COLUMNS) + [""]
    if results.get("learning_curves"):
        lines += curves_section(
            results["learning_curves"],
            "Validation during training (held-out warzone2100 speech) against process CPU-hours of each "
            "run (a warm-started run counts from zero), or, when a run logged none (a GPU run, a run cut "
            "off), every run against the training examples it has seen. Each model is decoded as it stood in its "
            "run: a spectral codec trained from scratch holds an untrained vocoder (swapped for the "
            "shipped one at export), so its curves track the mel codec through phase refinement alone; "
            "a run warm-started from the shipped codec decodes with the shipped vocoder.",
            lambda p: " / ".join(f"{name} {p[key]:{form}}" for name, key, form in (
                ("PESQ", "val/pesq", ".2f"), ("STOI", "val/stoi", ".3f"), ("mel", "val/mel_distance", ".3f"))
                if key in p))
    (out / "README.md").write_text("\n".join(lines) + "\n")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recipes.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, required=True, help="corpus manifest (recipes.prepare_data)")
    parser.add_argument("--codec", help="codec directory (default: the shipped model)")
    parser.add_argument("--vocoder", help="vocoder directory (default: the shipped model)")
    parser.add_argument("--runs", type=Path, nargs="*", default=[], help="training run folders for learning curves (default: keep the curves of an earlier report in --out)")
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--max-seconds", type=float, default=6.0, help="longest clip scored")
    parser.add_argument("--clips", type=float, default=1.0, help="fraction of each clip set's size (quick runs)")
    parser.add_argument("--iterations", type=int, nargs="+", default=[0, 4, 8, 16, 32, 100])
    parser.add_argument("--skip", nargs="*", default=[], choices=("codec", "vocoder"),
                        help="sections not to run; their results (and figures) from an earlier run in --out are kept")
    args = parser.parse_args(argv)
    if not 0 < args.clips <= 1:
        parser.error("--clips must be in (0, 1]")
    try:
        codec = Codec.from_pretrained(args.codec) if "codec" not in args.skip else None
        vocoder = Vocoder.from_pretrained(args.vocoder) if "vocoder" not in args.skip else None
        clips = {}
        for clip_set in CLIP_SETS:
            count = max(1, round(clip_set.count * args.clips))
            chosen = choose_clips(args.manifest, ClipSet(clip_set.name, clip_set.include, clip_set.split,
                                                         clip_set.speech, count, clip_set.min_seconds),
                                  args.max_seconds)
            if chosen:
                clips[clip_set] = chosen
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    notes = []
    if opus(6) is None:
        notes.append("Opus skipped: install Debian's opus-tools")
    if codec2(2400) is None:
        notes.append("Codec2 skipped: install Debian's codec2")
    previous = args.out / "results.json"
    results: dict = {}
    if previous.is_file():  # keep the sections this run skips
        kept = json.loads(previous.read_text())
        keep = [name for section in args.skip for name in ((section, "levels") if section == "codec" else (section,))]
        keep += [] if args.runs else ["learning_curves"]  # no runs given: the curves drawn before stay
        results = {name: kept[name] for name in keep if name in kept}
    with torch.inference_mode():
        if codec is not None:
            results["codec"] = evaluate_codec(codec, clips)
            results["levels"] = evaluate_levels(codec, clips)
            bitrate_figure(results["codec"], args.out)
            first = next(iter(clips.values()))
            spectrogram_figure(codec, first[:3], args.out)
        if vocoder is not None:
            results["vocoder"] = evaluate_vocoder(vocoder, clips, args.iterations)
            refinement_figure(results["vocoder"], args.iterations, args.out)
    if args.runs:
        results["learning_curves"] = learning_curves(args.runs, args.out)
    counts = {clip_set.name: len(items) for clip_set, items in clips.items()}
    (args.out / "results.json").write_text(json.dumps({"clips": counts, **results}, indent=2) + "\n")
    write_report(args.out, results, counts, notes)
    print(f"report: {args.out / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
