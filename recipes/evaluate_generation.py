"""Evaluation report of the text-to-audio model on held-out recordings.

    python -m recipes.evaluate_generation --manifest data/corpus/manifest.jsonl --out reports/generation
    python -m recipes.evaluate_generation --manifest ... --model DIR --clips-per-caption 4
    python -m recipes.evaluate_generation --manifest ... --class-manifest data/eval_everyday/manifest.jsonl

Every clip is embedded with aiSFX (:mod:`recipes.sound_embedding`). Writes ``OUT/README.md``,
``OUT/results.json``, ``OUT/spectrograms.png`` and listen-ready ``OUT/audio/*.wav``:

* **retrieval score** (the headline): for each caption of ``configs/retrieval_captions.txt`` the
  model generates ``--clips-per-caption`` clips; a clip scores when its embedding is nearer to the
  centroid of that caption's real held-out clips (valid and test splits, which no model trained on)
  than to any other caption's. The real clips are taken as the codec renders them (encoded and
  decoded), so the score measures the language model rather than the codec; scores against the
  original recordings are reported beside. Measured at guidance γ = 1 and γ = 3, beside chance (one
  over the number of captions) and beside the real held-out clips scored the same way, each left out
  of its own centroid (the ceiling the embedding allows);
* **Fréchet distance** between generated and real held-out clips in the same space, per γ;
* **continuation**: held-out clips of speech, effects and drums, prompted with their first 2 s and
  continued to their own length, at most 6 s, ``--continuation-samples`` times without text and as many
  times with the clip's caption
  (which names its kind, not the clip); a continuation scores when it is nearer to
  the (codec-rendered) rest of its own clip than to the rest of every other clip of its kind. Beside chance and beside
  the prompt alone scored the same way (how much the first 2 s already identify a clip);
* **everyday classes**: the retrieval score per ESC-50 class the model learned, prompted in plain words,
  against recordings of sources it never heard (``--class-sources``, by default the evaluation-only sources
  of :data:`recipes.sources.EVALUATION_ONLY_SOURCES`, read from their own corpus, ``--class-manifest``);
* **speed**: real-time factor of generating 10 s with guidance, with and without the codec's phase
  refinement, on this process's threads.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import soundfile as sf
import torch
from tqdm.auto import tqdm

from generation import AudioGen
from generation.vocabulary import MIN_RECORDINGS
from vocoder.audio import prepare_waveform, save_audio

from .coverage import CLASS_PROMPTS, ESC50_CLASSES, caption_classes
from .data import ManifestEntry, read_manifest
from .sources import EVALUATION_ONLY_SOURCES
from .evaluate import curves_figure, curves_section, read_curves
from .sound_embedding import SoundEmbedder, frechet_distance, retrieval_rate, wilson_interval

CAPTIONS_FILE = Path(__file__).parent / "configs" / "retrieval_captions.txt"
HELD_OUT = ("valid", "test")
GUIDANCE = (1.0, 3.0)
PROMPT_SECONDS, CONTINUATION_MAX_SECONDS = 2.0, 6.0
# the shortest clip continued, per kind: held-out drums are mostly single hits, and 2.5 s (the prompt and
# at least 0.5 s of its tail) keeps 8 drum recordings where 3 s kept 4
CONTINUATION_MIN_SECONDS = {"speech": 4.0, "effects": 4.0, "drums": 2.5}
CONTINUATION_SAMPLES = 4  # continuations per clip and condition: 8 drum clips are too few for one draw each
LM_METRICS = ("val/cross_entropy",)
SECTIONS = ("speed", "retrieval", "classes", "continuation")


def read_captions(path: Path = CAPTIONS_FILE) -> List[str]:
    """Non-empty, non-comment lines of a caption list."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _ordered(entries: Sequence[ManifestEntry]) -> List[ManifestEntry]:
    """A fixed order that does not depend on the manifest's (hash of the path)."""
    return sorted(entries, key=lambda e: hashlib.sha1(e.path.encode()).hexdigest())


def read_clip(manifest: Path, entry: ManifestEntry, sample_rate: int, start: float = 0.0,
              seconds: Optional[float] = None) -> torch.Tensor:
    """Mono ``[T]`` audio of a manifest entry at ``sample_rate``, from ``start`` for ``seconds``."""
    first = int(start * entry.sample_rate)
    frames = -1 if seconds is None else int(seconds * entry.sample_rate)
    data, rate = sf.read(str(manifest.parent / entry.path), start=first, frames=frames, dtype="float32", always_2d=True)
    return prepare_waveform(data.T, rate, sample_rate)[0, 0]


def kind_of(caption: str) -> Optional[str]:
    """The continuation kind of a caption: speech, drums or effects (music and short vocal sounds: None)."""
    if caption.startswith("a person speaking"):
        return "speech"
    if re.search(r"drum|cymbal|hi-hat|tabla|breakbeat", caption):
        return "drums"
    if "music" in caption or caption.startswith("a person"):
        return None
    return "effects"


def resynthesize(gen: AudioGen, clip: torch.Tensor) -> torch.Tensor:
    """The codec's rendering of a real clip ``[T]``: what generated audio is compared with, so that the
    scores measure the language model and not the codec (which moves every clip in embedding space)."""
    return gen.codec.decode(gen.codec.encode(clip, gen.sample_rate))[0, 0, :clip.shape[-1]]


def evaluate_retrieval(gen: AudioGen, embedder: SoundEmbedder, manifest: Path, entries: List[ManifestEntry],
                       captions: List[str], per_caption: int, max_real: int, out: Path) -> dict:
    held_out = {c: _ordered([e for e in entries if e.caption == c and e.split in HELD_OUT])[:max_real] for c in captions}
    skipped = [c for c, items in held_out.items() if len(items) < 2]
    captions = [c for c in captions if c not in skipped]
    real, real_labels, generated, durations = [], [], {g: [] for g in GUIDANCE}, {}
    for label, caption in enumerate(captions):
        items = held_out[caption]
        durations[caption] = float(np.clip(np.median([e.duration for e in items]), 1.0, 5.0))
        real += [read_clip(manifest, e, gen.sample_rate, seconds=durations[caption]) for e in items]
        real_labels += [label] * len(items)
    original_embeddings = embedder.embed(real, gen.sample_rate)
    real_embeddings = embedder.embed([resynthesize(gen, clip) for clip in real], gen.sample_rate)
    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    examples = []
    for label, caption in enumerate(tqdm(captions, desc="generating per caption")):
        for cfg in GUIDANCE:
            clips = gen.generate([caption] * per_caption, duration=durations[caption], cfg_coef=cfg, seed=label)
            generated[cfg].append(clips[:, 0])
            if cfg == GUIDANCE[-1]:
                for k in range(min(2, per_caption)):
                    name = f"{re.sub(r'[^a-z0-9]+', '_', caption.lower()).strip('_')}_{k}.wav"
                    save_audio(audio_dir / name, clips[k], gen.sample_rate)
                    examples.append({"caption": caption, "file": f"audio/{name}"})
    labels = [label for label in range(len(captions)) for _ in range(per_caption)]
    results = {"captions": captions, "skipped_captions": skipped, "clips_per_caption": per_caption,
               "real_clips": len(real), "chance": 1 / len(captions),
               "ceiling": retrieval_rate(real_embeddings, real_labels, real_embeddings, real_labels, leave_one_out=True),
               "ceiling_original": retrieval_rate(original_embeddings, real_labels, original_embeddings, real_labels,
                                                  leave_one_out=True),
               "frechet_resynthesis": frechet_distance(real_embeddings, original_embeddings),
               "examples": examples}
    for cfg in GUIDANCE:
        embedded = embedder.embed([clip for batch in generated[cfg] for clip in batch], gen.sample_rate)
        results[f"retrieval_cfg{cfg:g}"] = retrieval_rate(embedded, labels, real_embeddings, real_labels)
        results[f"retrieval_original_cfg{cfg:g}"] = retrieval_rate(embedded, labels, original_embeddings, real_labels)
        results[f"frechet_cfg{cfg:g}"] = frechet_distance(embedded, real_embeddings)
        results[f"frechet_original_cfg{cfg:g}"] = frechet_distance(embedded, original_embeddings)
        per = [retrieval_rate(embedded[i * per_caption:(i + 1) * per_caption], labels[i * per_caption:(i + 1) * per_caption],
                              real_embeddings, real_labels) for i in range(len(captions))]
        results[f"per_caption_cfg{cfg:g}"] = dict(zip(captions, per))
    spectrogram_figure([clips[0] for clips in generated[GUIDANCE[-1]]], captions, gen.sample_rate, out)
    return results


def class_references(entries: Sequence[ManifestEntry], sources: Sequence[str], classes: Sequence[str],
                     max_real: int) -> Dict[str, List[ManifestEntry]]:
    """Recordings of ``sources`` per target class among ``classes`` (one clip per recording, at most
    ``max_real``); a caption naming two classes (a mix) is left out, as it is no clean reference."""
    per_class: Dict[str, List[ManifestEntry]] = {name: [] for name in classes}
    seen: set = set()
    for entry in _ordered([e for e in entries if e.source in sources]):
        named = caption_classes(entry.caption)
        if len(named) == 1 and named[0] in per_class and entry.recording_id not in seen:
            seen.add(entry.recording_id)
            per_class[named[0]].append(entry)
    return {name: items[:max_real] for name, items in per_class.items() if len(items) >= 2}


def evaluate_classes(gen: AudioGen, embedder: SoundEmbedder, manifest: Path, entries: List[ManifestEntry],
                     sources: Sequence[str], per_class: int, max_real: int, out: Path,
                     classes: Optional[Sequence[str]] = None) -> dict:
    """Retrieval per everyday target class, prompted in plain words (``target_classes.tsv``), against
    recordings of ``sources``, which the model must never have trained on.

    The classes scored are ``classes`` (default: the ESC-50 classes the model learned, with at least
    :data:`MIN_RECORDINGS` training recordings in its vocabulary; name them to compare two models on
    one set) that the held-out sources hold at least 2 recordings of; a clip scores when it is nearest
    the centroid of its own class among those classes.
    """
    vocabulary = gen.known_sounds()
    if vocabulary is None:
        raise ValueError("the model has no vocabulary.json: the per-class evaluation needs its training classes")
    trained_on = sorted(set(sources) & set(vocabulary.sources))
    if trained_on:
        raise ValueError(f"the model trained on {', '.join(trained_on)}: per-class references must come from "
                         "sources it never heard")
    learned = [name for name in ESC50_CLASSES if vocabulary.classes.get(name, 0) >= MIN_RECORDINGS]
    unknown = sorted(set(classes or ()) - set(ESC50_CLASSES))
    if unknown:
        raise ValueError(f"not ESC-50 classes of the target vocabulary: {', '.join(unknown)}")
    references = class_references(entries, sources, list(classes) if classes else learned, max_real)
    classes = list(references)
    real, real_labels, durations = [], [], {}
    for label, name in enumerate(classes):
        items = references[name]
        durations[name] = float(np.clip(np.median([e.duration for e in items]), 1.0, 5.0))
        real += [read_clip(manifest, e, gen.sample_rate, seconds=durations[name]) for e in items]
        real_labels += [label] * len(items)
    results = {"sources": list(sources), "learned_classes": learned, "classes": classes,
               "prompts": {name: CLASS_PROMPTS[name] for name in classes},
               "references": {name: len(items) for name, items in references.items()},
               "clips_per_class": per_class, "chance": 1 / len(classes) if classes else None}
    if len(classes) < 2:
        results["skipped"] = "fewer than 2 learned classes have 2 or more held-out recordings"
        return results
    original = embedder.embed(real, gen.sample_rate)
    rendered = embedder.embed([resynthesize(gen, clip) for clip in real], gen.sample_rate)
    results["ceiling"] = retrieval_rate(rendered, real_labels, rendered, real_labels, leave_one_out=True)
    results["ceiling_original"] = retrieval_rate(original, real_labels, original, real_labels, leave_one_out=True)
    audio_dir = out / "audio" / "classes"
    audio_dir.mkdir(parents=True, exist_ok=True)
    labels = [label for label in range(len(classes)) for _ in range(per_class)]
    examples = []
    for cfg in GUIDANCE:
        generated = []
        for label, name in enumerate(tqdm(classes, desc=f"generating per class, γ = {cfg:g}")):
            clips = gen.generate([CLASS_PROMPTS[name]] * per_class, duration=durations[name], cfg_coef=cfg,
                                 seed=1000 + label)
            generated += list(clips[:, 0])
            if cfg == GUIDANCE[-1]:
                save_audio(audio_dir / f"{name}.wav", clips[0], gen.sample_rate)
                examples.append({"class": name, "prompt": CLASS_PROMPTS[name], "file": f"audio/classes/{name}.wav"})
        embedded = embedder.embed(generated, gen.sample_rate)
        results[f"retrieval_cfg{cfg:g}"] = retrieval_rate(embedded, labels, rendered, real_labels)
        results[f"retrieval_original_cfg{cfg:g}"] = retrieval_rate(embedded, labels, original, real_labels)
        results[f"per_class_cfg{cfg:g}"] = {
            name: retrieval_rate(embedded[i * per_class:(i + 1) * per_class], labels[i * per_class:(i + 1) * per_class],
                                 rendered, real_labels) for i, name in enumerate(classes)}
    results["examples"] = examples
    return results


def evaluate_continuation(gen: AudioGen, embedder: SoundEmbedder, manifest: Path, entries: List[ManifestEntry],
                          per_kind: int, samples: int = CONTINUATION_SAMPLES) -> dict:
    """Continuation rates per kind: ``per_kind`` held-out clips at most (one per recording), each continued
    ``samples`` times (one batch) per condition; a rate is the mean over all the continuations."""
    results = {}
    for kind, min_seconds in CONTINUATION_MIN_SECONDS.items():
        pool = _ordered([e for e in entries if e.split in HELD_OUT and kind_of(e.caption) == kind
                         and e.duration >= min_seconds])
        # one clip per recording, so no two clips of the pool are pieces of the same file
        chosen, seen = [], set()
        for entry in pool:
            if entry.recording_id not in seen:
                seen.add(entry.recording_id)
                chosen.append(entry)
        chosen = chosen[:per_kind]
        if len(chosen) < 2:
            continue
        prompts, rests = [], []
        continuations: Dict[str, List[torch.Tensor]] = {"continuation": [], "continuation_with_caption": []}
        for i, entry in enumerate(tqdm(chosen, desc=f"continuing {kind}")):
            total = min(entry.duration, CONTINUATION_MAX_SECONDS)
            clip = read_clip(manifest, entry, gen.sample_rate, seconds=total)
            cut = int(PROMPT_SECONDS * gen.sample_rate)
            prompt = clip[:cut].repeat(samples, 1, 1)
            for name, text in (("continuation", None), ("continuation_with_caption", [entry.caption] * samples)):
                out = gen.generate_continuation(prompt, gen.sample_rate, descriptions=text,
                                                duration=clip.shape[-1] / gen.sample_rate, seed=i)
                continuations[name] += list(out[:, 0, cut:])
            rendered = resynthesize(gen, clip)
            prompts.append(rendered[:cut])
            rests.append(rendered[cut:])
        own = list(range(len(chosen)))
        rest_embeddings = embedder.embed(rests, gen.sample_rate)
        results[kind] = {"clips": len(chosen), "samples_per_clip": samples, "chance": 1 / len(chosen),
                         "prompt_alone": retrieval_rate(embedder.embed(prompts, gen.sample_rate), own, rest_embeddings, own)}
        sampled = [i for i in own for _ in range(samples)]
        for name, clips in continuations.items():
            results[kind][name] = retrieval_rate(embedder.embed(clips, gen.sample_rate), sampled, rest_embeddings, own)
    return results


def measure_speed(gen: AudioGen, seconds: float = 10.0) -> dict:
    """Real-time factor of generating ``seconds`` of audio with guidance γ = 3 (tokens, then decoding)."""
    gen.generate_tokens(["rain falling"], duration=1.0, seed=0)  # warm-up
    start = time.perf_counter()
    tokens = gen.generate_tokens(["rain falling"], duration=seconds, cfg_coef=3.0, seed=0)
    token_time = time.perf_counter() - start
    result = {"threads": torch.get_num_threads(), "seconds": seconds, "tokens_s": token_time}
    for name, refine in (("default", None), ("no_refinement", 0)):
        start = time.perf_counter()
        gen.codec.decode(tokens, refine=refine)
        result[f"rtf_{name}"] = (token_time + time.perf_counter() - start) / seconds
    return result


def spectrogram_figure(clips: List[torch.Tensor], captions: List[str], sample_rate: int, out: Path) -> None:
    import matplotlib.pyplot as plt

    from vocoder.spectral import MelConfig, MelSpectrogram

    mel = MelSpectrogram(MelConfig(sample_rate=sample_rate))
    columns = 4
    rows = (len(clips) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(4.0 * columns, 2.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, clip, caption in zip(axes.flat, clips, captions):
        ax.imshow(mel(clip[None].float())[0].numpy(), origin="lower", aspect="auto", cmap="inferno", vmin=-11.5, vmax=2)
        ax.set_title(caption[:40], fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "spectrograms.png", dpi=70)
    plt.close(fig)


def _with_interval(rate: float, trials: int) -> str:
    low, high = wilson_interval(rate, trials)
    return f"{rate:.3f} ({low:.2f}-{high:.2f})"


def class_section(c: dict) -> List[str]:
    """The report's per-class table of everyday sounds."""
    not_learned = [name for name in c["classes"] if name not in c["learned_classes"]]
    lines = ["## Everyday classes, against sources it never heard", "",
             f"Held-out sources: {', '.join(c['sources'])}. The model learned {len(c['learned_classes'])} ESC-50 "
             f"classes (at least {MIN_RECORDINGS} training recordings each). Scored: the {len(c['classes'])} classes "
             "below, those sources holding at least 2 recordings of each"
             + (f" ({', '.join(not_learned)}: not learned by this model)" if not_learned else "")
             + f"; {c['clips_per_class']} clips per class from the plain prompt of "
             "`recipes/caption_rules/target_classes.tsv`, each scoring when it is nearest the centroid of its own "
             "class's recordings (as the codec renders them; and the originals) among these classes.", ""]
    if c.get("skipped"):
        return lines + [f"Not scored: {c['skipped']}.", ""]
    trials = len(c["classes"]) * c["clips_per_class"]
    references = sum(c["references"].values())
    lines += ["| | retrieval | vs originals |", "|---|---|---|"]
    for cfg in GUIDANCE:
        lines.append(f"| generated, γ = {cfg:g} | {_with_interval(c[f'retrieval_cfg{cfg:g}'], trials)} | "
                     f"{_with_interval(c[f'retrieval_original_cfg{cfg:g}'], trials)} |")
    lines += [f"| held-out recordings, each left out of its centroid (ceiling) | {_with_interval(c['ceiling'], references)} | "
              f"{_with_interval(c['ceiling_original'], references)} |",
              f"| chance | {c['chance']:.3f} | {c['chance']:.3f} |", "",
              "| class | prompt | held-out recordings | γ = 1 | γ = 3 | listen |", "|---|---|---|---|---|---|"]
    files = {e["class"]: e["file"] for e in c.get("examples", [])}
    for name in c["classes"]:
        rates = [c[f"per_class_cfg{cfg:g}"][name] for cfg in GUIDANCE]
        listen = f"[wav]({files[name]})" if name in files else ""
        lines.append(f"| {name} | {c['prompts'][name]} | {c['references'][name]} | "
                     + " | ".join(_with_interval(rate, c["clips_per_class"]) for rate in rates) + f" | {listen} |")
    unscored = [name for name in c["learned_classes"] if name not in c["classes"]]
    if unscored:
        lines += ["", f"Learned but without 2 held-out recordings (not scored): {', '.join(unscored)}."]
    return lines + [""]


def write_report(out: Path, results: dict, model: str) -> None:
    r, lines = results["retrieval"], ["# Text-to-audio evaluation", ""]
    generated = len(r["captions"]) * r["clips_per_caption"]
    lines += [f"Written by `python -m recipes.evaluate_generation` for `{model}`; every clip embedded with aiSFX "
              "(`recipes/sound_embedding.py`). Real clips are held-out recordings (valid and test splits) that "
              "no model trained on.", "",
              f"## Retrieval score ({len(r['captions'])} captions, {r['clips_per_caption']} clips each, "
              f"{r['real_clips']} real clips)", "",
              "References are the held-out recordings as the model's own codec renders them (encoded and decoded), "
              "so the scores measure the language model: the codec alone moves every clip in the embedding space "
              f"(Fréchet distance {r['frechet_resynthesis']:.3f} between the recordings and their renderings). "
              "The columns against the original recordings include that shift. In brackets: the 95 % Wilson "
              "interval of each rate, counting every clip as one trial.", "",
              "| | retrieval score | Fréchet distance | retrieval vs originals | Fréchet vs originals |",
              "|---|---|---|---|---|"]
    for cfg in GUIDANCE:
        lines.append(f"| generated, γ = {cfg:g} | {_with_interval(r[f'retrieval_cfg{cfg:g}'], generated)} | "
                     f"{r[f'frechet_cfg{cfg:g}']:.3f} | {_with_interval(r[f'retrieval_original_cfg{cfg:g}'], generated)} | "
                     f"{r[f'frechet_original_cfg{cfg:g}']:.3f} |")
    lines += [f"| held-out clips, each left out of its caption's centroid (ceiling) | "
              f"{_with_interval(r['ceiling'], r['real_clips'])} | | {_with_interval(r['ceiling_original'], r['real_clips'])} | |",
              f"| chance | {r['chance']:.3f} | | {r['chance']:.3f} | |", ""]
    if r["skipped_captions"]:
        lines += [f"Skipped (fewer than 2 held-out clips): {', '.join(r['skipped_captions'])}.", ""]
    lines += ["Per caption at γ = 3: " + ", ".join(f"{c} {v:.2f}" for c, v in r[f"per_caption_cfg{GUIDANCE[-1]:g}"].items()),
              "", "![first clip per caption, γ = 3](spectrograms.png)", "", "Listen (γ = 3):", ""]
    lines += [f"- [{e['caption']}]({e['file']})" for e in r["examples"]]
    if results.get("classes"):
        lines += class_section(results["classes"])
    samples = max([v.get("samples_per_clip", 1) for v in results["continuation"].values()], default=1)
    lines += ["", "## Continuation (2 s prompt)", "",
              "One clip per held-out recording, of at least "
              + ", ".join(f"{seconds:g} s for {kind}" for kind, seconds in CONTINUATION_MIN_SECONDS.items()) + f", "
              f"continued {samples} times per condition (a rate is the mean over all continuations; its interval "
              "still counts one trial per clip, since continuations of one prompt are not independent). "
              "Scored against the codec's rendering of the rest of each clip; \"prompt alone\" scores the rendered "
              "prompt the same way (how much the first 2 s already identify the clip). \"With its caption\" also "
              "gives the LM the clip's caption, which names its kind (many clips share one), not the clip.", "",
              "| kind | clips | continuation, no text | with its caption | prompt alone | chance |",
              "|---|---|---|---|---|---|"]
    for kind, v in results["continuation"].items():
        lines.append(f"| {kind} | {v['clips']} | {_with_interval(v['continuation'], v['clips'])} | "
                     f"{_with_interval(v['continuation_with_caption'], v['clips'])} | "
                     f"{_with_interval(v['prompt_alone'], v['clips'])} | {v['chance']:.3f} |")
    s = results["speed"]
    lines += ["", "## Speed", "",
              f"Generating {s['seconds']:g} s with guidance on {s['threads']} threads: tokens {s['tokens_s']:.1f} s; "
              f"real-time factor {s['rtf_default']:.2f} with the codec's default phase refinement, "
              f"{s['rtf_no_refinement']:.2f} without.", ""]
    if results.get("learning_curves"):
        lines += curves_section(
            results["learning_curves"],
            "Validation cross-entropy (nats per token, held-out recordings) against process CPU-hours.",
            lambda p: f"{p['val/cross_entropy']:.3f}")
    (out / "README.md").write_text("\n".join(lines) + "\n")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recipes.evaluate_generation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, required=True, help="corpus manifest (recipes.prepare_data)")
    parser.add_argument("--model", help="AudioGen directory (default: the shipped model)")
    parser.add_argument("--out", type=Path, default=Path("reports/generation"))
    parser.add_argument("--captions", type=Path, default=CAPTIONS_FILE, help="one caption per line")
    parser.add_argument("--clips-per-caption", type=int, default=4)
    parser.add_argument("--max-real", type=int, default=8, help="held-out clips per caption at most")
    parser.add_argument("--continuations", type=int, default=20, help="clips per continuation kind (at most; one per recording)")
    parser.add_argument("--continuation-samples", type=int, default=CONTINUATION_SAMPLES,
                        help="continuations per clip and condition (their mean is the clip's score)")
    parser.add_argument("--class-manifest", type=Path,
                        help="the evaluation corpus's manifest, holding --class-sources (python -m recipes.prepare_data "
                             f"--out DIR --packages {' '.join(EVALUATION_ONLY_SOURCES)}; default: --manifest)")
    parser.add_argument("--class-sources", nargs="*", default=list(EVALUATION_ONLY_SOURCES),
                        help="sources the model never trained on, whose recordings score the everyday classes "
                             "(default: the evaluation-only sources; none: no per-class section)")
    parser.add_argument("--clips-per-class", type=int, default=8)
    parser.add_argument("--classes", nargs="+", help="ESC-50 classes to score (default: those the model learned)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="what to measure (the report keeps the other sections of an earlier results.json in --out)")
    parser.add_argument("--runs", type=Path, nargs="*", default=[], help="LM training run folders for learning curves")
    args = parser.parse_args(argv)
    if args.clips_per_class < 1 or args.clips_per_caption < 1 or args.continuation_samples < 1 or args.max_real < 2 or args.continuations < 2:
        parser.error("--clips-per-class, --clips-per-caption and --continuation-samples must be >= 1, --max-real and --continuations >= 2")
    try:
        gen = AudioGen.from_pretrained(args.model)
        embedder = SoundEmbedder()
        entries = read_manifest(args.manifest)
        captions = read_captions(args.captions)
    except (ValueError, OSError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    earlier = args.out / "results.json"
    results = json.loads(earlier.read_text()) if set(args.sections) != set(SECTIONS) and earlier.is_file() else {}
    missing = sorted({"speed", "retrieval", "continuation"} - set(args.sections) - set(results))
    if missing:
        parser.error(f"--sections leaves out {', '.join(missing)}, which {earlier} does not hold: measure them too")
    with torch.inference_mode():
        if "speed" in args.sections:
            results["speed"] = measure_speed(gen)
        if "retrieval" in args.sections:
            results["retrieval"] = evaluate_retrieval(gen, embedder, args.manifest, entries, captions,
                                                      args.clips_per_caption, args.max_real, args.out)
        if "classes" in args.sections and args.class_sources:
            manifest = args.class_manifest or args.manifest
            try:
                class_entries = read_manifest(manifest) if args.class_manifest else entries
                if not any(e.source in args.class_sources for e in class_entries):
                    print(f"note: {manifest} holds none of {', '.join(args.class_sources)}: per-class section skipped; "
                          f"build the evaluation corpus with python -m recipes.prepare_data --out DIR --packages "
                          f"{' '.join(args.class_sources)} and pass --class-manifest DIR/manifest.jsonl", file=sys.stderr)
                else:
                    results["classes"] = evaluate_classes(gen, embedder, manifest, class_entries, args.class_sources,
                                                          args.clips_per_class, args.max_real, args.out,
                                                          args.classes)
            except ValueError as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
        if "continuation" in args.sections:
            results["continuation"] = evaluate_continuation(gen, embedder, args.manifest, entries, args.continuations,
                                                            args.continuation_samples)
    if args.runs:
        results["learning_curves"] = read_curves(args.runs, LM_METRICS)
        curves_figure(results["learning_curves"], LM_METRICS, args.out / "learning_curves.png", " (held-out tokens)")
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_report(args.out, results, args.model or "the shipped model")
    print(f"report: {args.out / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
