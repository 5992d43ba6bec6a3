"""Rule-based English captions for the recordings in the Debian audio packages.

Each source names its sounds differently, so each has a small function here that turns its
metadata (paths, stamp descriptions, drum-kit instrument names) into a short caption such as
"a snare drum hit", "a person speaking French" or "footsteps on gravel". The rules are data: ordered
tables of regular expressions in ``caption_rules/*.tsv``, matched against a lowercase path or name;
the first match wins, so specific patterns come before general ones. Anything unmatched falls back
to "the sound of <words of the file name>".

Speech is captioned by language only: the packages do not record who speaks, so no gender is
guessed ("a person speaking Greek", never "a woman speaking Greek").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Optional, Sequence, Tuple

# ISO 639-1 codes (plus Low German) of the languages spoken in the packages.
LANGUAGES = {
    "ar": "Arabic", "be": "Belarusian", "bg": "Bulgarian", "ca": "Catalan", "cs": "Czech",
    "da": "Danish", "de": "German", "el": "Greek", "en": "English", "es": "Spanish",
    "fr": "French", "he": "Hebrew", "hu": "Hungarian", "id": "Indonesian", "it": "Italian",
    "ja": "Japanese", "ko": "Korean", "lt": "Lithuanian", "ml": "Malayalam", "nb": "Norwegian",
    "nds": "Low German", "nl": "Dutch", "nn": "Norwegian", "pt": "Portuguese", "ro": "Romanian",
    "ru": "Russian", "sk": "Slovak", "sl": "Slovenian", "sv": "Swedish", "tn": "Setswana",
    "uk": "Ukrainian", "zh": "Chinese",
}


@dataclass(frozen=True)
class Caption:
    """A caption and, for speech, the language code it is spoken in."""

    text: str
    language: Optional[str] = None


@dataclass(frozen=True)
class Rule:
    """Captions text matching ``pattern`` (a regex, searched) with ``caption`` (may use ``\\1``)."""

    pattern: str
    caption: str

    def apply(self, text: str) -> Optional[str]:
        match = re.search(self.pattern, text)
        return match.expand(self.caption) if match else None


RULES_DIR = Path(__file__).parent / "caption_rules"


def read_rules(path: Path) -> Tuple[Rule, ...]:
    """Rules from a table of ``pattern<TAB>caption`` lines (``#`` lines are comments), in order."""
    rules = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        pattern, tab, caption = line.partition("\t")
        if not tab or not caption.strip():
            raise ValueError(f"{path}:{number}: expected 'pattern<TAB>caption', got {line!r}")
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"{path}:{number}: bad pattern {pattern!r}: {err}") from None
        rules.append(Rule(pattern, caption))
    return tuple(rules)


def first_match(text: str, rules: Iterable[Rule]) -> Optional[str]:
    """The caption of the first rule that matches ``text``, else None."""
    for rule in rules:
        caption = rule.apply(text)
        if caption is not None:
            return caption
    return None


def language_name(code: str) -> Optional[str]:
    """English name of a locale code such as ``fr``, ``en_GB`` or ``pt-BR``; None if unknown."""
    code = code.replace("-", "_").lower()
    return LANGUAGES.get(code) or LANGUAGES.get(code.split("_")[0])


def clean_caption(text: str) -> str:
    """One short line: no asides, quotes or final full stop; first letter lowercase unless an acronym starts it."""
    text = re.split(r"\s*[—:;]", text)[0]  # "hard candy—yum" -> "hard candy"
    text = re.sub(r"\([^)]*\)|[“”\"]", "", text)  # drop asides in brackets and quotes
    text = " ".join(text.split())
    text = text.rstrip(" .!")
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        text = text[0].lower() + text[1:]
    return text


def join_captions(captions: Sequence[str]) -> str:
    """``["a dog barking", "rain falling"]`` -> ``"a dog barking and rain falling"`` (empties and repeats dropped)."""
    parts = []
    for caption in captions:
        caption = caption.strip()
        if caption and caption not in parts:
            parts.append(caption)
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def path_words(path: str) -> list:
    """Words of a file name: split on separators and camelCase, numbers and take counts (``10x``) dropped."""
    stem = PurePosixPath(path).stem
    stem = re.sub(r"([a-z])([A-Z])", r"\1 \2", stem)
    words = re.split(r"[\s_\-+.!]+", stem.lower())
    return [w.rstrip("0123456789") for w in words if w and not re.fullmatch(r"\d+x?|v\d+|\d+", w)]


def sound_of(path: str) -> str:
    """The fallback caption: ``"the sound of <file name words>"``."""
    words = [w for w in path_words(path) if w]
    return "the sound of " + " ".join(words) if words else "a sound"


# Effects from game and sample packages (ufoai, widelands, wordwarvi, sonic-pi, lmms, megaglest,
# warzone2100, 0 A.D.), matched against the lowercase path without extension.
EFFECT_RULES: Tuple[Rule, ...] = read_rules(RULES_DIR / "effects.tsv")


def effect_caption(path: str) -> str:
    """Caption of a sound effect or instrument sample from its path, e.g. ``weapons/reload-smg``."""
    text = str(PurePosixPath(path).with_suffix("")).lower()
    return first_match(text, EFFECT_RULES) or sound_of(path)


# Drum-kit instrument names from Hydrogen's drumkit.xml ("Snare Rimshot", "Hi-Hat Open", "c3 - bass drum 1").
DRUM_RULES: Tuple[Rule, ...] = read_rules(RULES_DIR / "drums.tsv")


def drum_caption(instrument: str, kit: str = "", filename: str = "") -> str:
    """Caption of one Hydrogen drum-kit sample from its instrument name (or, failing that, its file name)."""
    if "guitar" in kit.lower():
        return "an acoustic guitar strumming a chord"
    for text in (instrument, PurePosixPath(filename).stem.replace("_", " ")):
        caption = first_match(text.lower(), DRUM_RULES)
        if caption is not None:
            return caption
    return "a drum hit"


def klettres_caption(path: str) -> Optional[Caption]:
    """``cs/alpha/a.ogg`` -> "a person saying a letter in Czech" (``syllab`` -> a syllable)."""
    parts = PurePosixPath(path).parts
    if len(parts) < 3 or parts[-2] not in ("alpha", "syllab"):
        return None
    code = parts[-3]
    language = language_name(code)
    unit = "a letter" if parts[-2] == "alpha" else "a syllable"
    return Caption(f"a person saying {unit} in {language}" if language else f"a person saying {unit}",
                   code if language else None)


# Tux Paint effect files whose content is not what the stamp name says (spoken words, or unknown).
TUXPAINT_SKIPPED_EFFECTS = ("symbols/faces/", "hanukkah/dreydl", "town/roadsigns/", "military/final-roll-call")
# Effects better described by what makes the sound than by the stamp's picture description.
TUXPAINT_EFFECTS = {
    "apple_red": "someone biting into an apple",
    "camera_35mm": "a camera shutter clicking",
    "cymbal_crash": "a crash cymbal",
    "drum_tomtom_floor": "a floor tom drum",
    "drumkit": "a drum kit playing",
    "fireworks": "fireworks exploding",
    "lightningbolt": "a thunderclap",
    "kettle": "an electric kettle boiling",
    "toilet": "a toilet flushing",
    "vacuum_cleaner": "a vacuum cleaner running",
    "washing-machine": "a washing machine running",
    "rubberduck": "a rubber duck squeaking",
    "scissors_small_open": "scissors snipping",
    "scissors_small_closed": "scissors snipping",
    "hammer": "a hammer hitting a nail",
    "mallet_metal": "a mallet striking metal",
    "saw": "a saw cutting wood",
    "apollo_lander": "a man speaking over a crackling radio",  # Neil Armstrong's words on the Moon
}


def split_language_suffix(stem: str) -> Tuple[str, Optional[str]]:
    """``owl_desc_fr`` -> (``owl_desc``, ``fr``); ``7_en_GB`` -> (``7``, ``en_GB``); ``sea_lion`` -> unchanged."""
    parts = stem.split("_")
    if len(parts) >= 3 and len(parts[-1]) == 2 and language_name("_".join(parts[-2:])) and parts[-2] in LANGUAGES:
        return "_".join(parts[:-2]), "_".join(parts[-2:])
    if len(parts) >= 2 and parts[-1] in LANGUAGES:
        return "_".join(parts[:-1]), parts[-1]
    return stem, None


def tuxpaint_caption(path: str, description: Optional[str] = None) -> Optional[Caption]:
    """Caption of a Tux Paint stamp sound (``path`` relative to the ``stamps`` folder); None to skip it.

    ``NAME_desc_LANG.ogg`` is a spoken description ("a person speaking French"; ``NAME_desc.ogg`` is
    the English one), files under ``symbols/math`` and ``symbols/alphabets`` are spoken numbers and
    letters, and a plain ``NAME.ogg`` is the stamp's sound effect, captioned from ``description``
    (the English line of ``NAME.txt``, e.g. "An owl." -> "the sound of an owl").
    """
    posix = PurePosixPath(path)
    stem, code = split_language_suffix(posix.stem)
    is_description = stem.endswith("_desc")
    if is_description and code is None:
        code = "en"
    language = language_name(code) if code else None
    lowered = str(posix).lower()
    if "symbols/math/" in lowered or "symbols/alphabets/" in lowered:
        if code is None and "/german/" in lowered:
            code, language = "de", "German"
        unit = "a number" if "symbols/math/" in lowered else "a letter"
        return Caption(f"a person saying {unit} in {language}" if language else f"a person saying {unit}", code)
    if is_description or code is not None:
        return Caption(f"a person speaking {language}", code) if language else None
    if lowered.startswith("symbols/") or any(part in lowered for part in TUXPAINT_SKIPPED_EFFECTS):
        return None
    if stem.lower() in TUXPAINT_EFFECTS:
        return Caption(TUXPAINT_EFFECTS[stem.lower()])
    if description and len(description.split()) <= 6:
        return Caption("the sound of " + clean_caption(description))
    return Caption(sound_of(path))


# GCompris resource paths and OpenSFX clip titles: explicit tables where "-", or no match, leaves a
# file out (interface blips, cartoon mixes and unknown clips say nothing a user would ask for).
LEAVE_OUT = "-"
GCOMPRIS_RULES: Tuple[Rule, ...] = read_rules(RULES_DIR / "gcompris.tsv")
OPENSFX_RULES: Tuple[Rule, ...] = read_rules(RULES_DIR / "opensfx.tsv")
EVERYDAY_RULES: Tuple[Rule, ...] = read_rules(RULES_DIR / "everyday.tsv")
EVALUATION_RULES: Tuple[Rule, ...] = read_rules(RULES_DIR / "evaluation.tsv")


def listed_caption(text: str, rules: Sequence[Rule]) -> Optional[str]:
    """Caption of the first rule matching lowercase ``text``; None when none matches or it says ``-``."""
    caption = first_match(text.lower(), rules)
    return None if caption in (None, LEAVE_OUT) else caption


def gcompris_caption(member: str) -> Optional[str]:
    """``.../explore_farm_animals/resource/animals/cow.ogg`` -> "a cow mooing"; None to leave it out."""
    return listed_caption(str(PurePosixPath(member).with_suffix("")), GCOMPRIS_RULES)


def opensfx_caption(title: str) -> Optional[str]:
    """OpenSFX clip title (``Modern car horn``) -> "a car horn honking"; None to leave it out."""
    return listed_caption(title.strip(), OPENSFX_RULES)


def everyday_caption(path: str) -> Optional[str]:
    """Path under ``usr/share`` (``games/supertuxkart/data/sfx/clock.ogg``) -> "a clock ticking"; None to leave it out."""
    return listed_caption(str(PurePosixPath(path).with_suffix("")), EVERYDAY_RULES)


def evaluation_caption(path: str) -> Optional[str]:
    """Like :func:`everyday_caption`, by ``caption_rules/evaluation.tsv``: the evaluation-only sources
    (``games/lugaru/Sounds/FootStepSnow2.ogg`` -> "a footstep on snow"); None to leave it out."""
    return listed_caption(str(PurePosixPath(path).with_suffix("")), EVALUATION_RULES)
