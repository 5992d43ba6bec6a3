"""Coverage of an everyday target vocabulary, and the training vocabulary shipped beside an LM.

    python -m recipes.coverage --manifest data/corpus/manifest.jsonl [--sources S ...] \\
        [--exclude-sources S ...] [--out reports/generation/coverage.md] [--vocabulary DIR/vocabulary.json]

The target vocabulary is ESC-50's 50 everyday sound classes plus speech and music
(``caption_rules/target_classes.tsv``). Captions map to classes by the rules of
``caption_rules/classes.tsv`` (:func:`caption_classes`). Per class the report counts recordings
(distinct ``recording_id``), minutes and sources; a class is covered with at least
:data:`MIN_RECORDINGS` recordings from at least :data:`MIN_SOURCES` sources, and coverage is the
number of ESC-50 classes covered. ``--vocabulary`` writes the train split's captions and class counts
as ``vocabulary.json`` (see :mod:`generation.vocabulary`).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from generation.vocabulary import VOCABULARY_FILE, Vocabulary, read_vocabulary, write_vocabulary

from .captions import RULES_DIR, Rule, first_match, read_rules
from .data import ManifestEntry, read_manifest

MIN_RECORDINGS = 5
MIN_SOURCES = 2
NO_CLASS = "-"  # a rule value: this caption part names no class (an exception before a general rule)
EXTRA_GROUP = "speech and music"


def read_target_classes(path: Path) -> Tuple[Dict[str, str], Dict[str, str]]:
    """``class -> group`` and ``class -> prompt`` from ``class<TAB>group<TAB>prompt`` lines, in order."""
    groups: Dict[str, str] = {}
    prompts: Dict[str, str] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = [field.strip() for field in line.split("\t")]
        if len(fields) != 3 or not re.fullmatch(r"[a-z_]+", fields[0]) or not all(fields) or fields[0] in groups:
            raise ValueError(f"{path}:{number}: expected a new 'class<TAB>group<TAB>prompt', got {line!r}")
        name, group, prompt = fields
        groups[name], prompts[name] = group, prompt
    return groups, prompts


def read_class_rules(path: Path, classes: Iterable[str]) -> Tuple[Rule, ...]:
    """Caption rules whose values are all target classes (or :data:`NO_CLASS`)."""
    rules = read_rules(path)
    known = set(classes) | {NO_CLASS}
    unknown = sorted({rule.caption for rule in rules} - known)
    if unknown:
        raise ValueError(f"{path}: classes not in the target vocabulary: {', '.join(unknown)}")
    return rules


TARGET_CLASSES, CLASS_PROMPTS = read_target_classes(RULES_DIR / "target_classes.tsv")
"""``class -> group`` of the target vocabulary, and ``class -> prompt``: the words a user would type for it."""
ESC50_CLASSES: Tuple[str, ...] = tuple(name for name, group in TARGET_CLASSES.items() if group != EXTRA_GROUP)
CLASS_RULES: Tuple[Rule, ...] = read_class_rules(RULES_DIR / "classes.tsv", TARGET_CLASSES)


def caption_parts(caption: str) -> List[str]:
    """The captions a mix joined (``"a, b and c"`` -> a, b, c), lowercase; a plain caption is one part."""
    return [part for part in re.split(r",\s+|\s+and\s+", caption.lower().strip()) if part]


def caption_classes(caption: str, rules: Sequence[Rule] = CLASS_RULES) -> List[str]:
    """Target classes a caption names: each joined part takes its first matching rule's class.

    >>> caption_classes("a dog barking and rain falling")
    ['dog', 'rain']
    """
    found: List[str] = []
    for part in caption_parts(caption):
        name = first_match(part, rules)
        if name is not None and name != NO_CLASS and name not in found:
            found.append(name)
    return found


@dataclass
class ClassCoverage:
    """What a corpus holds of one target class."""

    name: str
    group: str
    recordings: int = 0
    seconds: float = 0.0
    sources: Dict[str, int] = field(default_factory=dict)  # source -> recordings
    captions: Dict[str, int] = field(default_factory=dict)  # caption -> recordings, most first

    @property
    def minutes(self) -> float:
        return self.seconds / 60

    @property
    def covered(self) -> bool:
        return self.recordings >= MIN_RECORDINGS and len(self.sources) >= MIN_SOURCES


def class_coverage(entries: Iterable[ManifestEntry]) -> List[ClassCoverage]:
    """One row per target class (in the target vocabulary's order), zeros included."""
    recordings: Dict[str, set] = defaultdict(set)
    seconds: Counter = Counter()
    sources: Dict[str, Dict[str, set]] = defaultdict(lambda: defaultdict(set))
    captions: Dict[str, Dict[str, set]] = defaultdict(lambda: defaultdict(set))
    classes_of: Dict[str, List[str]] = {}
    for entry in entries:
        if entry.caption not in classes_of:
            classes_of[entry.caption] = caption_classes(entry.caption)
        for name in classes_of[entry.caption]:
            recordings[name].add(entry.recording_id)
            seconds[name] += entry.duration
            sources[name][entry.source].add(entry.recording_id)
            captions[name][entry.caption].add(entry.recording_id)
    return [ClassCoverage(name, group, len(recordings[name]), seconds[name],
                          _counts(sources[name]), _counts(captions[name]))
            for name, group in TARGET_CLASSES.items()]


def _counts(groups: Dict[str, set]) -> Dict[str, int]:
    """``name -> set of recordings`` as ``name -> count``, most first."""
    return dict(sorted(((name, len(ids)) for name, ids in groups.items()), key=lambda item: (-item[1], item[0])))


def covered(table: Sequence[ClassCoverage], names: Sequence[str] = ESC50_CLASSES) -> List[str]:
    """The classes among ``names`` that ``table`` covers."""
    return [row.name for row in table if row.name in names and row.covered]


def vocabulary_from_entries(entries: Sequence[ManifestEntry], splits: Sequence[str] = ("train",)) -> Vocabulary:
    """The captions (recordings each) and class counts of the ``splits`` of a manifest."""
    kept = [entry for entry in entries if entry.split in splits]
    by_caption: Dict[str, set] = defaultdict(set)
    for entry in kept:
        by_caption[entry.caption].add(entry.recording_id)
    classes = {row.name: row.recordings for row in class_coverage(kept)}
    return Vocabulary(_counts(by_caption), classes, "recordings", tuple(splits),
                      tuple(sorted({entry.source for entry in kept})))


def vocabulary_from_token_rows(rows: Sequence[dict], split: str = "train") -> Vocabulary:
    """A token folder's vocabulary from its index alone (folders from before extraction recorded one):
    clips per caption of ``split``; captions that join two others are mixed copies and left out."""
    counts = Counter(row["caption"] for row in rows if row["split"] == split)

    def mixed(caption: str) -> bool:
        pieces = caption.split(" and ")
        return any(" and ".join(pieces[:i]) in counts and " and ".join(pieces[i:]) in counts
                   for i in range(1, len(pieces)))

    plain = {caption: count for caption, count in counts.items() if not mixed(caption)}
    classes: Counter = Counter()
    for caption, count in plain.items():
        for name in caption_classes(caption):
            classes[name] += count
    return Vocabulary(dict(sorted(plain.items(), key=lambda item: (-item[1], item[0]))),
                      {name: classes[name] for name in TARGET_CLASSES}, "clips", (split,), ())


def token_vocabulary(tokens: Path) -> Vocabulary:
    """The vocabulary of a token folder: the one extraction wrote from its manifest, else its index's."""
    from .extract_tokens import read_token_index  # extract_tokens imports this module

    recorded = read_vocabulary(Path(tokens) / VOCABULARY_FILE)
    return recorded if recorded is not None else vocabulary_from_token_rows(read_token_index(Path(tokens)))


# ---------------------------------------------------------------------------------------------- report

def _sources_cell(row: ClassCoverage) -> str:
    return ", ".join(f"{name} ({count})" for name, count in row.sources.items()) or ""


def _captions_cell(row: ClassCoverage, limit: int = 4) -> str:
    shown = [f"{caption} ({count})" for caption, count in list(row.captions.items())[:limit]]
    more = len(row.captions) - limit
    return "; ".join(shown) + (f"; {more} more" if more > 0 else "")


def coverage_report(table: Sequence[ClassCoverage], train_table: Sequence[ClassCoverage],
                    entries: Sequence[ManifestEntry], command: str) -> str:
    """Markdown: coverage first, then the per-class table and what the corpus holds outside the classes."""
    names = covered(table)
    extra = [row.name for row in table if row.group == EXTRA_GROUP and row.covered]
    sources = sorted({entry.source for entry in entries})
    recordings = {entry.recording_id for entry in entries}
    hours = sum(entry.duration for entry in entries) / 3600
    unmapped: Dict[str, set] = defaultdict(set)
    for entry in entries:
        if not caption_classes(entry.caption):
            unmapped[entry.caption].add(entry.recording_id)
    unmapped_counts = _counts(unmapped)
    lines = [
        "# Coverage of everyday sounds",
        "",
        f"Written by `{command}`.",
        "",
        f"**Coverage: {len(names)} of {len(ESC50_CLASSES)} ESC-50 classes** (a class is covered with at least "
        f"{MIN_RECORDINGS} recordings from at least {MIN_SOURCES} sources); speech and music: "
        f"{' and '.join(extra) if extra else 'neither'} covered. The train split alone (what the LM learned "
        f"from) covers {len(covered(train_table))}.",
        "",
        f"Corpus: {len(recordings):,} recordings, {hours:.2f} h from {len(sources)} sources "
        f"({', '.join(sources)}), all splits. Covered: {', '.join(names) or 'none'}.",
        "",
        "Captions map to classes by the rules in `recipes/caption_rules/classes.tsv` (a mix's joined captions "
        "each count); recordings are distinct `recording_id`s.",
        "",
        "| group | class | recordings | minutes | train recordings | sources | covered | captions (recordings) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    train = {row.name: row for row in train_table}
    for row in table:
        mark = "yes" if row.covered else ""
        lines.append(f"| {row.group} | {row.name} | {row.recordings} | {row.minutes:.1f} | "
                     f"{train[row.name].recordings} | {_sources_cell(row)} | {mark} | {_captions_cell(row)} |")
    missing = [row.name for row in table if row.group != EXTRA_GROUP and row.recordings == 0]
    thin = [row.name for row in table if row.group != EXTRA_GROUP and row.recordings and not row.covered]
    lines += [
        "",
        f"No recordings at all ({len(missing)}): {', '.join(missing) or 'none'}.",
        "",
        f"Some, not enough ({len(thin)}): {', '.join(thin) or 'none'}.",
        "",
        f"Outside the target classes: {sum(unmapped_counts.values()):,} recordings under {len(unmapped_counts)} "
        f"captions, most: " + "; ".join(f"{caption} ({count})" for caption, count in list(unmapped_counts.items())[:15])
        + ".",
        "",
    ]
    return "\n".join(lines)


def select_sources(entries: Sequence[ManifestEntry], include: Optional[Sequence[str]],
                   exclude: Sequence[str]) -> List[ManifestEntry]:
    """Entries of the ``include`` sources (all when None) except the ``exclude`` ones; unknown names refused."""
    present = {entry.source for entry in entries}
    unknown = sorted((set(include or ()) | set(exclude)) - present)
    if unknown:
        raise ValueError(f"sources not in the manifest: {', '.join(unknown)}")
    return [entry for entry in entries
            if (include is None or entry.source in include) and entry.source not in exclude]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recipes.coverage", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, required=True, help="corpus manifest (recipes.prepare_data)")
    parser.add_argument("--sources", nargs="+", help="only these sources (default: all)")
    parser.add_argument("--exclude-sources", nargs="+", default=[], help="leave these sources out")
    parser.add_argument("--out", type=Path, help="write the Markdown report here (default: print it)")
    parser.add_argument("--vocabulary", type=Path, help="write the train split's vocabulary.json here")
    args = parser.parse_args(argv)
    try:
        entries = select_sources(read_manifest(args.manifest, check_files=False), args.sources, args.exclude_sources)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    command = "python -m recipes.coverage " + " ".join(argv if argv is not None else sys.argv[1:])
    table = class_coverage(entries)
    report = coverage_report(table, class_coverage(e for e in entries if e.split == "train"), entries, command)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        print(report)
    if args.vocabulary:
        write_vocabulary(args.vocabulary, vocabulary_from_entries(entries))
        print(f"wrote {args.vocabulary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
