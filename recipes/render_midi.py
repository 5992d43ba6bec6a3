"""Short clips rendered from General MIDI with real samples: instruments, percussion and sound effects.

    python -m recipes.render_midi --out /tmp/gm --soundfont /usr/share/sounds/sf2/FluidR3_GM.sf2

The corpus recipe uses this as the source ``fluidsynth-gm`` (``python -m recipes.prepare_data
--packages fluidsynth-gm ...``): it unpacks Debian's ``fluid-soundfont-gm`` (FluidR3_GM, MIT) and
renders with Debian's ``fluidsynth`` binary (``apt-get install fluidsynth``) into the unpacked
package's folder on first use. Which programs, note ranges and captions are data
(``caption_rules/gm_programs.tsv``); melodies and hits are drawn from a generator seeded by the clip's
name, and fluidsynth renders float samples without reverb, chorus or dither, so the clips are the
same on every run. Each program gets :data:`CLIPS_PER_PROGRAM` clips of a few seconds: after the
corpus recipe's silence trimming, 283 clips, 24 min (melodies 16 min, effects 5, percussion 3). It is
a rendered source, named apart from the recordings: its clips are samples played by a synthesizer.

Projected coverage, measured with ``recipes.coverage`` on corpus3's 12 shipped-LM sources plus
gcompris-qt-data and openttd-opensfx: 19 of 50 ESC-50 classes (today's 16 plus dog, train and
airplane); with this source as well, 21 (plus sea_waves and helicopter, each from one rendered sample
at several pitches beside few recordings). church_bells has rendered clips only, so stays uncovered.
"""

from __future__ import annotations

import argparse
import random
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

RULES = Path(__file__).parent / "caption_rules" / "gm_programs.tsv"
SOUNDFONT = "usr/share/sounds/sf2/FluidR3_GM.sf2"  # inside fluid-soundfont-gm
RENDER_RATE = 24_000  # the corpus resamples; content above 12 kHz is not used by its models
RENDER_VERSION = "v1"  # bump when the clips change, so cached renders are redone
CLIPS_PER_PROGRAM = {"melody": 4, "effect": 8, "drum": 6}
DRUM_KITS = (0, 8, 16, 32, 40)  # FluidR3's Standard, Room, Power, Jazz and Brush kits (sampled, not electronic)
TICKS = 480  # per quarter note
KINDS = ("melody", "effect", "drum")


class RenderError(RuntimeError):
    """fluidsynth is missing or failed to render a clip."""


@dataclass(frozen=True)
class Program:
    """One row of ``gm_programs.tsv``: what to play and how to caption it."""

    kind: str
    bank: int
    program: int
    low: int
    high: int
    caption: str

    @property
    def slug(self) -> str:
        return f"{self.kind}-{self.bank:03d}-{self.program:03d}-{self.low:03d}"


def read_programs(path: Path = RULES) -> Tuple[Program, ...]:
    """Rows ``kind<TAB>bank<TAB>program<TAB>low-high (or a drum key)<TAB>caption``, validated."""
    programs = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        try:
            kind, bank, program, notes, caption = fields
            low, _, high = notes.partition("-")
            row = Program(kind, int(bank), int(program), int(low), int(high or low), caption.strip())
        except ValueError:
            raise ValueError(f"{path}:{number}: expected 'kind<TAB>bank<TAB>program<TAB>notes<TAB>caption', got {line!r}") from None
        if kind not in KINDS or not (0 <= row.bank <= 128 and 0 <= row.program <= 127
                                     and 0 <= row.low <= row.high <= 127 and row.caption):
            raise ValueError(f"{path}:{number}: kind must be one of {KINDS} and numbers MIDI values, got {line!r}")
        programs.append(row)
    return tuple(programs)


# --------------------------------------------------------------------------- Standard MIDI files


def variable_length(value: int) -> bytes:
    """A MIDI variable-length quantity: 7 bits a byte, most significant first, high bit = more."""
    if value < 0:
        raise ValueError("delta times are never negative")
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


Event = Tuple[int, bytes]  # (absolute tick, MIDI message)


def midi_file(events: Sequence[Event], tempo_bpm: float = 120.0) -> bytes:
    """A format-0 Standard MIDI File holding ``events`` (sorted by tick; note-offs before note-ons)."""
    tempo = round(60_000_000 / tempo_bpm)
    track = variable_length(0) + b"\xff\x51\x03" + tempo.to_bytes(3, "big")
    now = 0
    for tick, message in sorted(events, key=lambda e: (e[0], e[1][0] & 0xF0 != 0x80)):
        track += variable_length(tick - now) + message
        now = tick
    track += variable_length(TICKS) + b"\xff\x2f\x00"  # a beat of silence, then end of track
    return (b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS)
            + b"MTrk" + struct.pack(">I", len(track)) + track)


def note(channel: int, key: int, start: int, length: int, velocity: int) -> List[Event]:
    """Note-on at ``start`` and note-off ``length`` ticks later."""
    return [(start, bytes([0x90 | channel, key, velocity])), (start + length, bytes([0x80 | channel, key, 0]))]


def select(channel: int, bank: int, program: int) -> List[Event]:
    """Bank select (controller 0) and program change at tick 0; the drum channel takes a kit."""
    return [(0, bytes([0xB0 | channel, 0, bank & 0x7F])), (0, bytes([0xC0 | channel, program]))]


# --------------------------------------------------------------------------- what each clip plays

MAJOR, MINOR = (0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10)


def melody_events(row: Program, rng: random.Random) -> List[Event]:
    """A melody of 8-14 notes: a random walk on a major or minor scale within the row's range."""
    scale = rng.choice((MAJOR, MINOR))
    root = rng.randrange(row.low, max(row.low + 1, row.high - 11))
    keys = [root + 12 * octave + step for octave in range(-1, 4) for step in scale]
    keys = [k for k in keys if row.low <= k <= row.high]
    position = rng.randrange(len(keys))
    events = select(0, row.bank, row.program)
    tick = 0
    for _ in range(rng.randint(8, 14)):
        length = rng.choice((TICKS // 2, TICKS // 2, TICKS, TICKS, TICKS * 3 // 2, TICKS * 2))
        events += note(0, keys[position], tick, int(length * 0.9), rng.randint(70, 110))
        tick += length
        position = min(len(keys) - 1, max(0, position + rng.choice((-2, -1, -1, 1, 1, 2, 0))))
    return events


def effect_events(row: Program, rng: random.Random) -> List[Event]:
    """One to three held notes of a sound-effect program, each one to three seconds (at 120 bpm)."""
    events = select(0, row.bank, row.program)
    tick = 0
    for _ in range(rng.randint(1, 3)):
        length = rng.randint(2, 6) * TICKS
        events += note(0, rng.randint(row.low, row.high), tick, length, rng.randint(80, 120))
        tick += length + rng.randint(0, 2) * TICKS // 2
    return events


def drum_events(row: Program, rng: random.Random) -> List[Event]:
    """One to eight hits of one percussion key on one of :data:`DRUM_KITS` (channel 10)."""
    events = select(9, 0, rng.choice(DRUM_KITS))
    tick = 0
    for _ in range(rng.randint(1, 8)):
        events += note(9, row.low, tick, TICKS // 4, rng.randint(60, 127))
        tick += rng.choice((TICKS // 2, TICKS // 2, TICKS, TICKS * 3 // 2))
    return events


PLAYERS = {"melody": melody_events, "effect": effect_events, "drum": drum_events}


@dataclass(frozen=True)
class Clip:
    """One clip to render: its file name (no suffix), caption and MIDI file."""

    name: str
    caption: str
    midi: bytes


def planned_clips(programs: Sequence[Program] = (), clips_per_program: Optional[dict] = None) -> List[Clip]:
    """Every clip of every program, each drawn from a generator seeded by the clip's name."""
    programs = programs or read_programs()
    counts = clips_per_program or CLIPS_PER_PROGRAM
    clips = []
    for row in programs:
        for index in range(counts[row.kind]):
            name = f"{row.slug}-{index:02d}"
            rng = random.Random(f"{RENDER_VERSION}/{name}")
            clips.append(Clip(name, row.caption, midi_file(PLAYERS[row.kind](row, rng), rng.uniform(84, 132))))
    return clips


# --------------------------------------------------------------------------- rendering


def fluidsynth_command() -> str:
    """The ``fluidsynth`` binary, or a clear error saying how to get it."""
    found = shutil.which("fluidsynth")
    if found is None:
        raise RenderError("rendering MIDI needs the fluidsynth command (apt-get install fluidsynth)")
    return found


def render(midi_path: Path, wav_path: Path, soundfont: Path, sample_rate: int = RENDER_RATE) -> None:
    """Render one MIDI file to a float WAV with fluidsynth (no reverb, chorus or dither)."""
    command = [fluidsynth_command(), "-ni", "-R", "0", "-C", "0", "-g", "0.5", "-T", "wav", "-O", "float",
               "-r", str(sample_rate), "-F", str(wav_path), str(soundfont), str(midi_path)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise RenderError(f"fluidsynth did not finish {midi_path.name} within 120 s") from None
    if result.returncode != 0 or not wav_path.is_file() or wav_path.stat().st_size <= 44:
        raise RenderError(f"fluidsynth failed on {midi_path.name}: {result.stderr.strip()[-300:]}")


def render_clips(soundfont: Path, out_dir: Path, clips: Sequence[Clip] = ()) -> List[Tuple[Clip, Path]]:
    """Render ``clips`` (default: every planned clip) into ``out_dir`` as ``NAME.wav`` beside
    ``NAME.mid``; clips already rendered are reused. Returns each clip with its WAV path."""
    soundfont = Path(soundfont)
    if not soundfont.is_file():
        raise RenderError(f"sound font not found: {soundfont} (apt-get download fluid-soundfont-gm)")
    clips = clips or planned_clips()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rendered = []
    for clip in clips:
        midi_path, wav_path = out_dir / f"{clip.name}.mid", out_dir / f"{clip.name}.wav"
        if not (wav_path.is_file() and midi_path.is_file() and midi_path.read_bytes() == clip.midi):
            midi_path.write_bytes(clip.midi)
            partial = wav_path.with_suffix(".part.wav")  # a killed render never leaves a truncated clip behind
            render(midi_path, partial, soundfont)
            partial.replace(wav_path)
        rendered.append((clip, wav_path))
    return rendered


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recipes.render_midi", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for the .mid and .wav clips")
    parser.add_argument("--soundfont", type=Path, default=Path("/") / SOUNDFONT)
    args = parser.parse_args(argv)
    try:
        rendered = render_clips(args.soundfont, args.out)
    except RenderError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{len(rendered)} clips in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
