"""Rule-based English captions for the recordings in the Debian audio packages.

Each source names its sounds differently, so each has a small function here that turns its
metadata (paths, stamp descriptions, drum-kit instrument names) into a short caption such as
"a snare drum hit", "a person speaking French" or "footsteps on gravel". The rules are ordered
lists of regular expressions matched against a lowercase path or name: the first match wins,
so specific patterns come before general ones. Anything unmatched falls back to
"the sound of <words of the file name>".

Speech is captioned by language only: the packages do not record who speaks, so no gender is
guessed ("a person speaking Greek", never "a woman speaking Greek").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
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


# Effects from game and sample packages (ufoai, widelands, wordwarvi, sonic-pi, lmms), matched
# against the lowercase path without extension. Order matters: specific before general.
EFFECT_RULES: Tuple[Rule, ...] = tuple(Rule(p, c) for p, c in [
    # music
    (r"(^|/)music/", "instrumental music"),
    (r"highscoremusic|mono-?mix|monomix|mono$", "music"),
    # voices
    (r"aliens/.*/(die|hurt)", "an alien creature shrieking in pain"),
    (r"aliens/.*/attack", "an alien creature attacking"),
    (r"aliens/.*/move", "an alien creature moving"),
    (r"fem\w*(death|hurt|scream)", "a woman screaming in pain"),
    (r"male\w*(death|hurt)", "a man groaning in pain"),
    (r"help_(up|down)_here", "a person shouting for help"),
    (r"woohoo|yay", "a person cheering"),
    (r"aaaah|ooooof|ow_my_spine|fallingscream", "a person crying out in pain"),
    (r"hohoho", "a person laughing ho ho ho"),
    (r"usethesource|nice_bank_shot|abducted", "a person speaking"),
    (r"misc_burp", "a person burping"),
    (r"breath", "a person breathing"),
    (r"applause", "applause"),
    (r"raving_crowd", "a cheering crowd"),
    # footsteps and movement
    (r"footsteps/(water|splash)", "footsteps splashing in water"),
    (r"footsteps/hitground", "a body falling to the ground"),
    (r"footsteps/crouch", "a person crouching down"),
    (r"footsteps/stand", "a person standing up"),
    (r"footsteps/([a-z]+)", r"footsteps on \1"),
    # weapons
    (r"reload", "a weapon being reloaded"),
    (r"grenade-pin", "a grenade pin being pulled"),
    (r"grenade-bounce", "a grenade bouncing"),
    (r"impact/\w+-bodyimpact", "a projectile hitting a body"),
    (r"impact/water", "a bullet hitting water"),
    (r"impact/", "a projectile hitting a wall"),
    (r"chaingun|hmg|smg|needler", "a machine gun firing"),
    (r"shotgun", "a shotgun firing"),
    (r"pistol", "a pistol shot"),
    (r"rifle|sniper|gauss|bolter|flechette", "a rifle shot"),
    (r"flak_gun|gunwheel|combat-gun|cannon-fire|gunshot", "a gun firing"),
    (r"laser|plasma|ptl-", "a laser gun firing"),
    (r"flamer", "a flamethrower"),
    (r"explo|bomb|flak_hit|cineboom|rocket-exp", "an explosion"),
    (r"grenade-launcher|missile_launch|rocket-|combat-rocket", "a rocket launching"),
    (r"sword-hit", "a sword hit"),
    (r"swoosh|woosh|swash|sword-fly|melee", "a swoosh"),
    (r"taser|/electro$|zzzt|sparks|tesla", "an electric crackle"),
    # doors, breaking, impacts
    (r"cardoor", "a car door closing"),
    (r"door\d*-open", "a door opening"),
    (r"door\d*-close", "a door closing"),
    (r"creak|doors/", "a door creaking"),
    (r"breakglass", "glass breaking"),
    (r"breakwood", "wood breaking"),
    (r"breakmetal|metalbang|clang", "metal banging"),
    (r"breakelectric", "an electrical device breaking"),
    (r"stonebang", "stones banging together"),
    (r"bodyslam|ground_smack", "a heavy thud"),
    (r"us_quarter", "a coin dropping"),
    (r"timpani", "a timpani boing"),
    # nature and ambience
    (r"thunder|lightning", "thunder rumbling"),
    (r"wind_turbine", "a wind turbine whirring"),
    (r"arcticwind|(^|/)wind", "wind blowing"),
    (r"cricket", "crickets chirping"),
    (r"(^|/)bird", "a bird singing"),
    (r"boar", "a wild boar grunting"),
    (r"moose|stag", "a deer bellowing"),
    (r"wolf|coyote", r"a \g<0> howling"),
    (r"frog", "a frog croaking"),
    (r"duck", "a duck quacking"),
    (r"misc_crow", "a crow cawing"),
    (r"farm/ox", "an ox lowing"),
    (r"sheep", "a sheep bleating"),
    (r"horse", "a horse neighing"),
    (r"donkey", "a donkey braying"),
    (r"farm_animal", "farm animals"),
    (r"volcano", "a volcano erupting"),
    (r"fire", "a fire crackling"),
    (r"steam", "steam hissing"),
    (r"bubble|waterfontain|(^|/)water", "water bubbling"),
    (r"tv_static", "television static"),
    (r"tv_news|radiomessage", "a radio broadcast"),
    (r"disco", "disco music"),
    (r"jingle", "a short jingle"),
    # machines and crafts (widelands)
    (r"diesel", "a diesel engine"),
    (r"hover", "a hovercraft engine"),
    (r"flyby", "an aircraft flying by"),
    (r"jetwash|rocket_exhaust", "a jet engine roaring"),
    (r"geologist_hammer", "a hammer striking rock"),
    (r"hammering|smith", "a hammer striking metal"),
    (r"sharpening", "a blade being sharpened"),
    (r"mill_turning", "a mill wheel turning"),
    (r"weav", "a loom weaving"),
    (r"tree_falling", "a tree falling"),
    (r"woodcutting", "an axe chopping wood"),
    (r"(gold|iron)ping", "a metal ping"),
    (r"furnace", "a furnace roaring"),
    (r"fizzle", "hot metal hissing in water"),
    (r"saw", "a saw cutting wood"),
    (r"stonemason|stonecutter|stonegrind", "stone being cut"),
    (r"mortar", "a mortar grinding"),
    (r"goldspin", "a spinning wheel turning"),
    (r"scythe", "a scythe cutting grass"),
    (r"fisher_throw_net", "a fishing net being thrown"),
    (r"fisher_pull_net", "a fishing net being pulled in"),
    (r"falling_tools", "tools falling on the ground"),
    (r"taverns/", "cooking in a kitchen"),
    # instrument and drum samples (sonic-pi, lmms)
    (r"loop_amen|breakbeat|(^|/)break\d|jungle", "a breakbeat drum loop"),
    (r"loop_tabla", "a tabla rhythm"),
    (r"loop_drone", "a synth drone"),
    (r"beats/|loop_", "a drum loop"),
    (r"tabla", "a tabla"),
    (r"(^|/)bd_|bassdrum|drum_bass|kick|nasty_bass", "a kick drum"),
    (r"drum_roll", "a drum roll"),
    (r"snare_rim|sidestick|rim\d", "a rimshot"),
    (r"(^|/)sn_|snare", "a snare drum"),
    (r"hihat_closed|drum_cymbal_closed", "a closed hi-hat"),
    (r"hihat_open|drum_cymbal_open|hihat", "an open hi-hat"),
    (r"hihat_foot|drum_cymbal_pedal", "a hi-hat pedal"),
    (r"crash", "a crash cymbal"),
    (r"ride\d", "a ride cymbal"),
    (r"splash", "a splash cymbal"),
    (r"cymbal", "a cymbal"),
    (r"tom", "a tom drum"),
    (r"cowbell", "a cowbell"),
    (r"clap", "a hand clap"),
    (r"snap", "a finger snap"),
    (r"shaker", "a shaker"),
    (r"drums/clav", "claves"),
    (r"drums/wood|elec_wood", "a wood block"),
    (r"zap", "an electronic zap"),
    (r"ambi_choir", "an ambient choir"),
    (r"ambi_piano", "an ambient piano"),
    (r"ambi_glass", "a wine glass humming"),
    (r"ambi_", "an ambient drone"),
    (r"church_organ", "a church organ"),
    (r"e_organ", "an electric organ"),
    (r"e_piano", "an electric piano"),
    (r"harpsichord", "a harpsichord"),
    (r"piano", "a piano"),
    (r"violin_pizzicato", "a violin playing pizzicato"),
    (r"violin", "a violin"),
    (r"cello", "a cello"),
    (r"trumpet", "a trumpet"),
    (r"flute", "a flute"),
    (r"latin_brass", "a brass section"),
    (r"latin_guitar", "a latin guitar riff"),
    (r"distorted", "a distorted electric guitar"),
    (r"steel_guitar", "a steel-string guitar"),
    (r"guit_", "an electric guitar"),
    (r"bassslap", "a slap bass"),
    (r"tb303|acid", "an acid bass line"),
    (r"bass", "a synth bass"),
    (r"techno_synth|synth", "a techno synthesizer"),
    (r"bell_choir|perc_bell|elec_bell|chime", "a bell ringing"),
    (r"choir|chorus", "a synth choir pad"),
    (r"strings?\d", "a string ensemble"),
    (r"pad|ambient|_drone", "a synth pad"),
    (r"wind_chimes", "wind chimes"),
    (r"scratch|backspin|rewind", "a record scratch"),
    (r"vinyl_hiss", "vinyl crackle"),
    (r"metronome", "a metronome ticking"),
    (r"dong", "a metallic gong"),
    (r"perc_till", "a cash register"),
    (r"perc_door", "a door knock"),
    (r"impact|(^|/)hit", "a heavy hit"),
    (r"mehackit_robot|glitch_robot", "a robot voice"),
    (r"mehackit_phone", "a telephone tone"),
    (r"glitch_", "a glitchy electronic sound"),
    (r"sweep|warp|chroma|(^|/)start|(^|/)stop", "an electronic sweep"),
    (r"spiderwalk", "an alien creature moving"),
    (r"alien|engine|machine|generator|pump|ventilation|hum|dron|lights_loop", "machinery humming"),
    (r"atmo|_atm|sand-city", "an eerie ambience"),
    # interface sounds
    (r"alarm|alert|under_attack", "an alarm"),
    (r"elec_triangle", "a triangle"),
    (r"radar|beep|blip|ping|elec_", "an electronic beep"),
    (r"click|item-d", "a click"),
    (r"geoscape/|sound/misc/|message|lobby|site_occupied|construction|ui/", "a notification sound"),
])


def effect_caption(path: str) -> str:
    """Caption of a sound effect or instrument sample from its path, e.g. ``weapons/reload-smg``."""
    text = str(PurePosixPath(path).with_suffix("")).lower()
    return first_match(text, EFFECT_RULES) or sound_of(path)


# Drum-kit instrument names from Hydrogen's drumkit.xml ("Snare Rimshot", "Hi-Hat Open", "c3 - bass drum 1").
DRUM_RULES: Tuple[Rule, ...] = tuple(Rule(p, c) for p, c in [
    (r"kick|bass ?drum|(^|\W)bd", "a kick drum hit"),
    (r"rim ?shot", "a snare drum rimshot"),
    (r"snare roll", "a snare drum roll"),
    (r"snare|(^|\W)sn\d", "a snare drum hit"),
    (r"side ?stick|stick|rim click|(^|\s)click", "a drumstick click"),
    (r"(hat|hh).*(pedal|pd|foot)|pedal (hh|hat)", "a hi-hat pedal"),
    (r"(hat|hh).*(open|op\b|semi|swish)|open (hh|hat)", "an open hi-hat"),
    (r"hat|hh", "a closed hi-hat"),
    (r"floor tom|tom floor", "a floor tom hit"),
    (r"tom", "a tom drum hit"),
    (r"crash", "a crash cymbal"),
    (r"bell|cup", "a ride cymbal bell"),
    (r"ride", "a ride cymbal"),
    (r"splash", "a splash cymbal"),
    (r"china", "a china cymbal"),
    (r"cymbal", "a cymbal"),
    (r"clap", "a hand clap"),
    (r"snap", "a finger snap"),
    (r"cowbell", "a cowbell"),
    (r"tambourine", "a tambourine"),
    (r"maraca|shaker", "a maraca shake"),
    (r"bongo", "a bongo hit"),
    (r"conga", "a conga hit"),
    (r"djembe", "a djembe hit"),
    (r"sangban|dununba|kenkeni", "a dunun drum hit"),
    (r"cajon", "a cajon hit"),
    (r"clave", "claves"),
    (r"woodblock", "a wood block"),
    (r"waterglass", "a water glass being struck"),
    (r"agogo", "an agogo bell"),
    (r"whistle", "a whistle"),
    (r"zap|fx", "an electronic drum sound"),
])


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
