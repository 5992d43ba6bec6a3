"""Entropy coding of codec codes whose decode is bit-exact everywhere by construction.

The probability of every code is computed from integer counts with integer arithmetic only
(NumPy ``int64`` additions, multiplications and floor divisions: no float, no threads, no BLAS),
so the encoder and any decoder on any machine build the very same cumulative frequencies. Those
drive the arithmetic coder of the ``encodec`` package (:mod:`encodec.quantization.ac`), fed with
our integer CDFs (its own ``build_stable_quantized_cdf`` starts from float probabilities, so it is
not used). Its interval update ``ceil(range_low * (delta / 2**24))`` is written with Python floats,
but every value in it is exact: ``delta < 2**25`` after its renormalisation, ``delta / 2**24`` is a
dyadic rational, and ``range_low * delta < 2**49`` fits a double's 53-bit significand, so the float
expressions equal their exact rational values on every IEEE-754 platform (:func:`_check_exactness`).

The probability model (:class:`ContextModel`) predicts the code of codebook ``k`` at frame ``t``
from what the decoder already has, in the order frames, then codebooks ``0..K-1`` (level-major, so
the coarse codes of a frame come first):

* ``prev``: the previous frame's code of the same codebook, through a cluster map (k-means of the
  codebook's vectors, computed offline and shipped as integers) so the table stays dense;
* ``level0``: for a residual codebook, the first-level code of the same group in the same frame;
* ``group0``: for the second group, the first group's code of the same level in the same frame;
* ``geometric``: the codebook's entries ranked by their integer squared distance to a predicted
  vector, the previous frame's reconstruction of the same group (minus the coarser levels already
  coded in this frame, for a residual codebook), computed from the codebooks rounded to integers
  (shipped in the table); a shipped table gives the probability of each rank, one per bucket of
  the rank the previous frame's code had (steady or changing signal). Speaker- and
  source-independent, so it generalises where code tables do not.

Each context selects a row of a shipped count table (learned on the training split of the corpus);
rows are smoothed towards the codebook's unigram (Dirichlet prior ``beta``), the components are
mixed with integer weights, and rows also count the stream's own codes as it goes (adaptive counts),
so long files learn their speaker. A uniform floor of ``1 / 2**FLOOR_SHARE_BITS`` of the range keeps
every code codable and bounds how many codes a payload byte can hold (see :func:`max_codes`).

The shipped offline codec's table lives in ``codec/entropy_tables/<table id>.npz``; any other model
keeps its table beside its weights as ``entropy_table.npz`` (:data:`TABLE_FILE`, read by
``Codec.from_pretrained`` and written by ``save_pretrained``). Each table names the model fingerprint
it belongs to; a stream names its table by id, so a decoder refuses a stream whose table it does not
have instead of decoding garbage. :func:`fit_table` builds one for any codec (``python -m
recipes.fit_entropy --model DIR --manifest M`` fits and saves it from a corpus).
"""

from __future__ import annotations

import hashlib
import io
import math
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

TOTAL_RANGE_BITS = 24  # the arithmetic coder's range: 2**24, encodec's default
FLOOR_SHARE_BITS = 6  # every code keeps at least 1/64 of the range spread uniformly
PROB_BITS = 16  # mixture weights and the unigram prior sum to 2**16
COUNT_LIMIT = 1 << 20  # a context row's counts are halved when they pass this (int64 headroom)
TABLE_ID_BYTES = 4
TABLES_DIR = Path(__file__).parent / "entropy_tables"
TABLE_FILE = "entropy_table.npz"  # a model's own table, beside its weights
CONTEXT_KINDS = ("prev", "level0", "group0", "geometric")
RANK_BUCKET_EDGES = (0, 1, 4, 16, 64)  # the previous code's own rank picks the geometric table:
RANK_BUCKETS = len(RANK_BUCKET_EDGES) + 1  # bucket 0 = no previous rank, then rank 0, 1-3, 4-15, 16-63, 64+


def rank_bucket(rank: np.ndarray) -> np.ndarray:
    """Bucket of a previous rank (-1: none), vectorised; a steady stream stays in the low buckets."""
    return np.where(rank < 0, 0, np.searchsorted(np.array(RANK_BUCKET_EDGES), rank, side="right"))


class EntropyError(ValueError):
    """An entropy-coded payload that does not decode (the bitstream turns it into BitstreamError), or a
    table file that is not one."""


# ------------------------------------------------------------------------------------ integer CDFs


def quantized_cdf(freqs: np.ndarray) -> np.ndarray:
    """Integer frequencies (int64, any non-negative scale, sum < 2**39) -> the coder's cumulative
    ranges: ``cdf[i]`` is the upper end of symbol ``i``, ``cdf[-1] == 2**TOTAL_RANGE_BITS``.

    Every symbol gets ``floor_width`` plus its share of the rest, floors of exact integer products;
    what rounding leaves over goes to the most likely symbol (lowest index on ties), so the CDF
    fills the whole range and no decoder value falls between symbols.
    """
    count = freqs.shape[-1]
    total_range = 1 << TOTAL_RANGE_BITS
    floor_width = max(2, total_range >> (FLOOR_SHARE_BITS + max(0, count - 1).bit_length()))
    span = total_range - floor_width * count
    if span <= 0:
        raise ValueError(f"{count} symbols do not fit a 2**{TOTAL_RANGE_BITS} range")
    total = int(freqs.sum())
    if total <= 0:
        ranges = np.full(count, floor_width, dtype=np.int64)
    else:
        ranges = floor_width + (freqs.astype(np.int64) * span) // total
    ranges[int(np.argmax(ranges))] += total_range - int(ranges.sum())
    return np.cumsum(ranges)


def max_codes(payload_bytes: int) -> int:
    """The most codes a payload of ``payload_bytes`` can hold: with the uniform floor no code is
    likelier than ``1 - 2**-FLOOR_SHARE_BITS``, so each costs at least ``-log2`` of that in bits.
    Checked before decoding, so a forged header cannot make a small payload decode for long."""
    min_bits = -math.log2(1.0 - 2.0 ** -FLOOR_SHARE_BITS)
    return int((8 * payload_bytes + 64) / min_bits) + 1


def _check_exactness() -> None:
    """The coder's float expressions are exact for our ranges (see the module docstring)."""
    assert TOTAL_RANGE_BITS + (TOTAL_RANGE_BITS + 1) <= 53


_check_exactness()


# ------------------------------------------------------------------------------------ the model


@dataclass
class EntropyTable:
    """Integer tables of one codec model (all arrays int64 once loaded).

    ``clusters[k, code]``: cluster of a code of codebook ``k`` (used when it serves as a context);
    ``unigram[k]``: counts of each code; ``tables[k]``: one ``[contexts + 1, codebook_size]`` count
    table per entry of ``kinds[k]`` (the last row: no context, e.g. the first frame); ``betas[k]``
    and ``weights[k]``: the Dirichlet prior of each component and its mixture weight (integers,
    weights summing to ``2**PROB_BITS``); ``increment``: what one coded code adds to its rows.
    """

    fingerprint: bytes
    groups: int
    codebook_size: int
    clusters: np.ndarray
    unigram: np.ndarray
    kinds: List[Tuple[str, ...]]
    tables: List[List[np.ndarray]]
    betas: np.ndarray
    weights: np.ndarray
    increment: int = 4
    vectors: Optional[np.ndarray] = None  # [K, size, dim] codebooks rounded to integers (geometric)
    rank_counts: Optional[np.ndarray] = None  # [K, RANK_BUCKETS, size] rank counts (geometric)
    table_id: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        self.clusters = np.asarray(self.clusters, dtype=np.int64)
        self.unigram = np.asarray(self.unigram, dtype=np.int64)
        self.betas = np.asarray(self.betas, dtype=np.int64)
        self.weights = np.asarray(self.weights, dtype=np.int64)
        self.tables = [[np.asarray(t, dtype=np.int64) for t in per_book] for per_book in self.tables]
        self.kinds = [tuple(k) for k in self.kinds]
        if self.vectors is not None:
            self.vectors = np.asarray(self.vectors, dtype=np.int64)
            self.rank_counts = np.asarray(self.rank_counts, dtype=np.int64)
        self.validate()
        if not self.table_id:
            self.table_id = hashlib.blake2b(self.to_bytes(), digest_size=TABLE_ID_BYTES).digest()

    @property
    def num_codebooks(self) -> int:
        return int(self.unigram.shape[0])

    @property
    def num_clusters(self) -> int:
        return int(self.clusters.max()) + 1

    def validate(self) -> None:
        """Raise ``ValueError`` unless every array has the shape, range and sums the coder needs."""
        books, size = self.unigram.shape if self.unigram.ndim == 2 else (0, 0)
        if books < 1 or size != self.codebook_size or not 2 <= size <= 1 << 16:
            raise ValueError(f"entropy table: unigram shaped {self.unigram.shape} for codebook size {self.codebook_size}")
        if self.groups < 1 or books % self.groups:
            raise ValueError(f"entropy table: {books} codebooks are not whole levels of {self.groups} groups")
        if self.clusters.shape != (books, size) or self.clusters.min() < 0 or self.clusters.max() >= size:
            raise ValueError("entropy table: cluster map has the wrong shape or range")
        if len(self.kinds) != books or len(self.tables) != books:
            raise ValueError("entropy table: one list of contexts per codebook is needed")
        if self.betas.shape != self.weights.shape or self.betas.shape[0] != books:
            raise ValueError("entropy table: betas and weights must be [codebooks, components]")
        for k in range(books):
            if len(self.kinds[k]) != len(self.tables[k]) or len(self.kinds[k]) > self.weights.shape[1]:
                raise ValueError(f"entropy table: codebook {k} has {len(self.tables[k])} tables for {self.kinds[k]}")
            if int(self.weights[k].sum()) != 1 << PROB_BITS or self.weights[k].min() < 0:
                raise ValueError(f"entropy table: weights of codebook {k} must be >= 0 and sum to 2**{PROB_BITS}")
            for j, (kind, table) in enumerate(zip(self.kinds[k], self.tables[k])):
                if kind not in CONTEXT_KINDS:
                    raise ValueError(f"entropy table: unknown context {kind!r}")
                if kind == "level0" and k < self.groups or kind == "group0" and k % self.groups == 0:
                    raise ValueError(f"entropy table: codebook {k} cannot use context {kind!r}")
                if kind == "geometric":
                    continue
                if table.shape != (self.num_clusters + 1, size) or table.min() < 0 or table.max() >= COUNT_LIMIT:
                    raise ValueError(f"entropy table: table {kind!r} of codebook {k} is shaped {table.shape}")
                if not 0 < int(self.betas[k, j]) < 1 << 16:
                    raise ValueError("entropy table: betas must lie in [1, 2**16)")
        if self.unigram.min() < 0 or self.unigram.sum(1).min() <= 0 or self.unigram.max() >= 1 << 31:
            raise ValueError("entropy table: unigram counts must be non-negative with a positive sum")
        if any("geometric" in k for k in self.kinds):
            if (self.vectors is None or self.vectors.ndim != 3 or self.vectors.shape[:2] != (books, size)
                    or np.abs(self.vectors).max() >= 1 << 10 or self.vectors.shape[2] > 4096):
                raise ValueError("entropy table: geometric contexts need integer vectors [K, size, dim] below 2**10")
            if self.rank_counts.shape != (books, RANK_BUCKETS, size) or self.rank_counts.min() < 1 or self.rank_counts.max() >= 1 << 24:
                raise ValueError("entropy table: rank counts must be [K, RANK_BUCKETS, size] in [1, 2**24)")
        if not 0 <= self.increment < 1 << 12:
            raise ValueError("entropy table: increment must lie in [0, 4096)")

    # ------------------------------------------------------------------ serialisation

    def arrays(self) -> Dict[str, np.ndarray]:
        """The table as named integer arrays (what :meth:`save` writes)."""
        out = {
            "fingerprint": np.frombuffer(self.fingerprint, dtype=np.uint8),
            "meta": np.array([self.groups, self.codebook_size, self.increment], dtype=np.int64),
            "clusters": self.clusters.astype(np.int32),
            "unigram": self.unigram.astype(np.int64),
            "betas": self.betas, "weights": self.weights,
        }
        if self.vectors is not None:
            out["vectors"] = self.vectors.astype(np.int16)
            out["rank_counts"] = self.rank_counts.astype(np.int64)
        for k in range(self.num_codebooks):
            for j, (kind, table) in enumerate(zip(self.kinds[k], self.tables[k])):
                out[f"table_{k}_{j}_{kind}"] = table.astype(np.uint32)
        return out

    def to_bytes(self) -> bytes:
        """A canonical byte string of every integer (what the table id hashes)."""
        digest = hashlib.blake2b(digest_size=32)
        for name, array in sorted(self.arrays().items()):
            digest.update(name.encode() + b"\0" + str(array.shape).encode() + b"\0")
            digest.update(np.ascontiguousarray(array.astype("<i8")).tobytes())
        return digest.digest()

    def save(self, path: Path) -> Path:
        """Write the table as ``.npz`` (no pickles)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **self.arrays())
        return path

    @classmethod
    def load(cls, path: Path) -> "EntropyTable":
        """Read a table written by :meth:`save` (``allow_pickle=False``); :class:`EntropyError` for a
        file that is not one."""
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
            return cls._from_arrays(arrays)
        except EntropyError:
            raise
        except (OSError, KeyError, ValueError, TypeError, IndexError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            raise EntropyError(f"{path} is not a valid entropy table ({type(err).__name__}: {err})") from None

    @classmethod
    def _from_arrays(cls, arrays: Dict[str, np.ndarray]) -> "EntropyTable":
        groups, codebook_size, increment = (int(v) for v in arrays["meta"])
        books = arrays["unigram"].shape[0]
        kinds: List[List[str]] = [[] for _ in range(books)]
        tables: List[List[np.ndarray]] = [[] for _ in range(books)]
        names = sorted((n for n in arrays if n.startswith("table_")), key=lambda n: tuple(map(int, n.split("_")[1:3])))
        for name in names:
            _, k, _, kind = name.split("_", 3)
            kinds[int(k)].append(kind)
            tables[int(k)].append(arrays[name])
        return cls(bytes(arrays["fingerprint"].astype(np.uint8)), groups, codebook_size, arrays["clusters"],
                   arrays["unigram"], kinds, tables, arrays["betas"], arrays["weights"], increment,
                   arrays.get("vectors"), arrays.get("rank_counts"))


_REGISTRY: Dict[bytes, EntropyTable] = {}
_SCANNED = False


def register_table(table: EntropyTable) -> None:
    """Make ``table`` available to :func:`table_by_id` and :func:`table_for` in this process; for its
    model it now comes before every table registered or shipped earlier."""
    _scan()
    _REGISTRY.pop(table.table_id, None)
    _REGISTRY[table.table_id] = table


def _scan() -> None:
    global _SCANNED
    if not _SCANNED:
        _SCANNED = True
        for path in sorted(TABLES_DIR.glob("*.npz")):
            table = EntropyTable.load(path)
            _REGISTRY.setdefault(table.table_id, table)


def table_for(fingerprint: bytes) -> Optional[EntropyTable]:
    """The entropy table of the model with ``fingerprint`` (the newest registered), if there is one."""
    _scan()
    found = [t for t in _REGISTRY.values() if t.fingerprint == fingerprint]
    return found[-1] if found else None


def table_by_id(table_id: bytes) -> Optional[EntropyTable]:
    """The registered table whose id a stream names, if this toolkit has it."""
    _scan()
    return _REGISTRY.get(bytes(table_id))


class ContextModel:
    """The integer probability model of one stream (one signal): call :meth:`frequencies` for each
    code in coding order, then :meth:`update` with the code. Encoder and decoder make the same calls.
    """

    def __init__(self, table: EntropyTable, num_codebooks: int) -> None:
        if not 0 < num_codebooks <= table.num_codebooks or num_codebooks % table.groups:
            raise EntropyError(f"the entropy table codes {table.num_codebooks} codebooks in groups of "
                               f"{table.groups}, not {num_codebooks}")
        self.table = table
        self.num_codebooks = num_codebooks
        self.none_row = table.num_clusters
        unigram = table.unigram[:num_codebooks] + 1
        # The prior every row is smoothed towards, in units of 2**-PROB_BITS (sums to about 2**16).
        self.prior = (unigram << PROB_BITS) // unigram.sum(axis=1, keepdims=True) + 1
        self.adaptive = [[np.zeros_like(t) for t in table.tables[k]] for k in range(num_codebooks)]
        self.previous = np.full(num_codebooks, -1, dtype=np.int64)
        self.current = np.full(num_codebooks, -1, dtype=np.int64)
        self.last_rank = np.full(num_codebooks, -1, dtype=np.int64)
        self._ranks: Optional[np.ndarray] = None
        if table.vectors is not None:
            self.norms = (table.vectors * table.vectors).sum(-1)  # [K, size] exact int64
            self.float_vectors = table.vectors.astype(np.float64)  # integer-valued, see _geometric
            self.rank_freqs = table.rank_counts

    def _geometric(self, k: int) -> np.ndarray:
        """Frequencies by rank of each entry's integer distance to the predicted vector."""
        groups, vectors = self.table.groups, self.table.vectors
        group = k % groups
        self._ranks = None
        if self.previous[k] < 0:
            return np.ones(self.table.codebook_size, dtype=np.int64)
        target = np.zeros(vectors.shape[2], dtype=np.int64)
        for source in range(group, self.num_codebooks, groups):
            target += vectors[source, self.previous[source]]
        for source in range(group, k, groups):
            target -= vectors[source, self.current[source]]
        # Integer-valued float64 through BLAS: every product and partial sum is an integer below
        # 2**53 (|vector| < 2**10, |target| < 2**12, dim <= 4096), so any summation order, thread
        # count or FMA gives the exact integer dot products.
        distance = self.norms[k] - 2 * (self.float_vectors[k] @ target.astype(np.float64)).astype(np.int64)
        order = np.argsort(distance, kind="stable")
        ranks = np.empty(self.table.codebook_size, dtype=np.int64)
        ranks[order] = np.arange(self.table.codebook_size)
        self._ranks = ranks
        return self.rank_freqs[k, int(rank_bucket(self.last_rank[k]))][ranks]

    def _row(self, k: int, kind: str) -> int:
        groups = self.table.groups
        if kind == "prev":
            source = self.previous[k]
        elif kind == "level0":
            source = self.current[k % groups]
            k = k % groups
        else:  # group0
            source = self.current[k - k % groups]
            k = k - k % groups
        if kind == "prev" and source < 0:
            return self.none_row
        return int(self.table.clusters[k, source])

    def frequencies(self, k: int) -> np.ndarray:
        """Integer frequencies (int64 ``[codebook_size]``) of codebook ``k``'s next code."""
        table = self.table
        prior = self.prior[k]
        total = np.zeros(table.codebook_size, dtype=np.int64)
        self._rows = []
        for j, kind in enumerate(table.kinds[k]):
            if kind == "geometric":
                counts, row = self._geometric(k), -1
            else:
                row = self._row(k, kind)
                counts = table.tables[k][j][row] + self.adaptive[k][j][row]
            self._rows.append(row)
            beta, weight = int(table.betas[k, j]), int(table.weights[k, j])
            if weight == 0:
                continue
            mass = int(counts.sum()) + beta
            total += ((counts << PROB_BITS) + beta * prior) * weight // mass
        return total

    def update(self, k: int, code: int) -> None:
        """Record codebook ``k``'s code (after :meth:`frequencies` for it)."""
        increment = self.table.increment
        if increment:
            for j, row in enumerate(self._rows):
                if row < 0:
                    continue
                adaptive = self.adaptive[k][j][row]
                adaptive[code] += increment
                if int(self.table.tables[k][j][row].sum() + adaptive.sum()) >= COUNT_LIMIT:
                    adaptive >>= 1
        self.current[k] = code
        if "geometric" in self.table.kinds[k]:
            self.last_rank[k] = -1 if self._ranks is None else int(self._ranks[code])
        if k == self.num_codebooks - 1:
            self.previous[:] = self.current
            self.current[:] = -1


# ------------------------------------------------------------------------------------ coding


def encode_codes(codes: np.ndarray, table: EntropyTable) -> bytes:
    """Arithmetic-code ``codes [B, K, F]`` with ``table``'s context model: one coder over the
    signals in turn, each frame's codebooks in order, every signal starting from the shipped counts."""
    from encodec.quantization.ac import ArithmeticCoder

    codes = np.asarray(codes, dtype=np.int64)
    batch, books, frames = codes.shape
    if codes.size and (codes.min() < 0 or codes.max() >= table.codebook_size):
        raise EntropyError(f"codes must lie in [0, {table.codebook_size})")
    out = io.BytesIO()
    coder = ArithmeticCoder(out, TOTAL_RANGE_BITS)
    for b in range(batch):
        model = ContextModel(table, books)
        for t in range(frames):
            for k in range(books):
                code = int(codes[b, k, t])
                coder.push(code, quantized_cdf(model.frequencies(k)))
                model.update(k, code)
    coder.flush()
    return out.getvalue()


def decode_codes(payload: bytes, table: EntropyTable, batch: int, books: int, frames: int) -> np.ndarray:
    """Inverse of :func:`encode_codes`: codes ``[B, K, F]`` (int64). Raises :class:`EntropyError`
    for a payload that runs out, lands outside every code's range or leaves bytes unread; the work is
    bounded by the payload's size (:func:`max_codes`), whatever the header claims."""
    from encodec.quantization.ac import ArithmeticDecoder

    count = batch * books * frames
    if count > max_codes(len(payload)):
        raise EntropyError(f"{len(payload)} payload bytes cannot hold {count} codes")
    source = io.BytesIO(bytes(payload))
    decoder = ArithmeticDecoder(source, TOTAL_RANGE_BITS)
    codes = np.empty((batch, books, frames), dtype=np.int64)
    try:
        for b in range(batch):
            model = ContextModel(table, books)
            for t in range(frames):
                for k in range(books):
                    code = decoder.pull(quantized_cdf(model.frequencies(k)))
                    if code is None:
                        raise EntropyError("entropy-coded payload ends before its last code")
                    codes[b, k, t] = code
                    model.update(k, code)
    except (RuntimeError, AssertionError, RecursionError, IndexError) as err:
        raise EntropyError(f"entropy-coded payload does not decode ({type(err).__name__})") from None
    # The encoder writes exactly the bits the decoder reads, then zero bits up to a whole byte.
    unpacker = decoder.unpacker
    if source.tell() != len(payload) or unpacker._current_bits >= 8 or unpacker._current_value != 0:
        raise EntropyError("entropy-coded payload has bytes or bits after its last code")
    return codes


def coded_bits(codes: np.ndarray, table: EntropyTable) -> float:
    """The ideal code length in bits (``-log2`` of each code's quantized probability) of ``codes
    [B, K, F]``: what the arithmetic coder achieves to within a few bytes, without coding."""
    codes = np.asarray(codes, dtype=np.int64)
    batch, books, frames = codes.shape
    bits = 0.0
    for b in range(batch):
        model = ContextModel(table, books)
        for t in range(frames):
            for k in range(books):
                cdf = quantized_cdf(model.frequencies(k))
                code = int(codes[b, k, t])
                width = int(cdf[code]) - (int(cdf[code - 1]) if code else 0)
                bits += TOTAL_RANGE_BITS - math.log2(width)
                model.update(k, code)
    return bits


# ------------------------------------------------------------------------------------ fitting


def cluster_codebook(vectors: np.ndarray, num_clusters: int, iterations: int = 30, seed: int = 0) -> np.ndarray:
    """K-means (Lloyd, k-means++ start, seeded) of one codebook's vectors ``[size, dim]``: the
    cluster of each code as int64. Runs offline, in float; only its integer result is shipped."""
    x = np.asarray(vectors, dtype=np.float64)
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, num_clusters):
        d = ((x[:, None] - np.array(centres)[None]) ** 2).sum(-1).min(1)
        centres.append(x[rng.choice(len(x), p=d / d.sum())] if d.sum() > 0 else x[rng.integers(len(x))])
    c = np.array(centres)
    for _ in range(iterations):
        assign = ((x[:, None] - c[None]) ** 2).sum(-1).argmin(1)
        for j in range(num_clusters):
            if (assign == j).any():
                c[j] = x[assign == j].mean(0)
    return ((x[:, None] - c[None]) ** 2).sum(-1).argmin(1).astype(np.int64)


def _contexts(clip: np.ndarray, k: int, kind: str, clusters: np.ndarray, groups: int) -> np.ndarray:
    """The context row of every frame of codebook ``k`` in ``clip [K, F]`` (vectorised twin of
    :meth:`ContextModel._row`)."""
    none_row = int(clusters.max()) + 1
    if kind == "prev":
        prev = clusters[k][clip[k, :-1]]
        return np.concatenate([[none_row], prev])
    source = k % groups if kind == "level0" else k - k % groups
    return clusters[source][clip[source]]


def integer_vectors(codebooks: Sequence[np.ndarray]) -> np.ndarray:
    """The codebooks ``[K, size, dim]`` scaled by one power of two and rounded to integers of at most 2**9."""
    stacked = np.stack([np.asarray(c, dtype=np.float64) for c in codebooks])
    peak = float(np.abs(stacked).max()) or 1.0
    exponent = 9 - math.frexp(peak)[1]  # peak * 2**exponent < 2**9
    return np.round(stacked * 2.0 ** exponent).astype(np.int64)


def geometric_ranks(clip: np.ndarray, k: int, vectors: np.ndarray, groups: int) -> np.ndarray:
    """Vectorised twin of :meth:`ContextModel._geometric`: the rank of each frame's code (from the
    second frame on) among codebook ``k``'s entries ordered by distance to the predicted vector."""
    books = clip.shape[0]
    group = k % groups
    target = sum(vectors[s][clip[s, :-1]] for s in range(group, books, groups))
    for s in range(group, k, groups):
        target = target - vectors[s][clip[s, 1:]]
    exact = (target.astype(np.float64) @ vectors[k].T.astype(np.float64)).astype(np.int64)  # integers < 2**53
    distance = (vectors[k] * vectors[k]).sum(-1)[None] - 2 * exact
    order = np.argsort(distance, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(order.shape[1]), order.shape), 1)
    return ranks[np.arange(len(ranks)), clip[k, 1:]]


def fit_table(clips: Sequence[np.ndarray], codebooks: Sequence[np.ndarray], groups: int, fingerprint: bytes,
              kinds: Optional[Sequence[Sequence[str]]] = None, num_clusters: int = 64, row_mass: int = 4096,
              betas: Sequence[int] = (64, 256, 1024), valid: Optional[Sequence[np.ndarray]] = None,
              increment: int = 4) -> EntropyTable:
    """Fit an :class:`EntropyTable` for a codec from ``clips`` (each ``[K, F]``, all codebooks) and
    its codebook vectors in code order (``codebooks[k]`` is ``[size, dim]``, as the quantizer's
    ``codebooks_by_code()``).

    Counts are scaled so that no context row holds more than ``row_mass`` (the prior's strength,
    so the stream's own counts can still move it); each component's ``beta`` is picked from
    ``betas`` and the mixture weights by EM, both on ``valid`` clips (default: every fourth clip,
    held out of the counts), measured without the adaptive counts.
    """
    clips = [np.asarray(c, dtype=np.int64) for c in clips]
    books, size = len(codebooks), int(codebooks[0].shape[0])
    if valid is None:
        valid, clips = clips[::4], [c for i, c in enumerate(clips) if i % 4]
    if kinds is None:
        kinds = [("geometric", "prev") + (("group0",) if k % groups else ()) + (("level0",) if k >= groups else ())
                 for k in range(books)]
    vectors = integer_vectors(codebooks)
    rank_counts = np.ones((books, RANK_BUCKETS, size), dtype=np.int64)
    for k in range(books):
        for c in clips:
            if c.shape[1] > 1:
                ranks = geometric_ranks(c, k, vectors, groups)
                buckets = rank_bucket(np.concatenate([[-1], ranks[:-1]]))
                np.add.at(rank_counts[k], (buckets, ranks), 1)
    rank_counts = np.maximum(1, (rank_counts * ((1 << 23) - 1)) // rank_counts.sum(-1, keepdims=True).max())
    clusters = np.stack([cluster_codebook(codebooks[k], num_clusters, seed=k) for k in range(books)])
    unigram = np.stack([sum(np.bincount(c[k], minlength=size) for c in clips) for k in range(books)])
    tables: List[List[np.ndarray]] = []
    for k in range(books):
        per_book = []
        for kind in kinds[k]:
            if kind == "geometric":
                per_book.append(np.zeros((1, size), dtype=np.int64))
                continue
            counts = np.zeros((num_clusters + 1, size), dtype=np.int64)
            for c in clips:
                np.add.at(counts, (_contexts(c, k, kind, clusters, groups), c[k]), 1)
            mass = counts.sum(1, keepdims=True)
            per_book.append(np.where(mass > row_mass, (counts * row_mass) // np.maximum(mass, 1), counts))
        tables.append(per_book)
    # Tune betas and weights on the validation clips, in float (offline; the result is integers).
    width = max(len(k) for k in kinds)
    beta_out = np.full((books, width), betas[0], dtype=np.int64)
    weight_out = np.zeros((books, width), dtype=np.int64)
    prior = (unigram + 1) / (unigram + 1).sum(1, keepdims=True)
    for k in range(books):
        probs = []
        for j, kind in enumerate(kinds[k]):
            if kind == "geometric":
                freqs = rank_counts[k] / rank_counts[k].sum(-1, keepdims=True)
                parts = []
                for c in valid:
                    ranks = geometric_ranks(c, k, vectors, groups)
                    buckets = rank_bucket(np.concatenate([[-1], ranks[:-1]]))
                    parts.append(np.concatenate([[1.0 / size], freqs[buckets, ranks]]))
                probs.append(np.concatenate(parts))
                continue
            best = None
            for beta in betas:
                p = np.concatenate([
                    (tables[k][j][ctx, c[k]] + beta * prior[k][c[k]]) / (tables[k][j][ctx].sum(1) + beta)
                    for c in valid for ctx in [_contexts(c, k, kind, clusters, groups)]])
                score = -np.log2(p).mean()
                if best is None or score < best[0]:
                    best = (score, beta, p)
            beta_out[k, j] = best[1]
            probs.append(best[2])
        p = np.stack(probs)  # [components, positions]
        lam = np.full(len(p), 1.0 / len(p))
        for _ in range(50):
            resp = lam[:, None] * p
            lam = (resp / resp.sum(0, keepdims=True)).mean(1)
        weights = np.floor(lam * (1 << PROB_BITS)).astype(np.int64)
        weights[int(np.argmax(weights))] += (1 << PROB_BITS) - int(weights.sum())
        weight_out[k, : len(weights)] = weights
    return EntropyTable(bytes(fingerprint), groups, size, clusters, unigram, [tuple(k) for k in kinds], tables,
                        beta_out, weight_out, increment, vectors, rank_counts)
