"""Exact and near-duplicate detection for instruction rows.

**Exact duplicates** are rows whose chosen view (the whole conversation, the user turns or the
first user turn; see `text.py`) is identical once normalised: NFKC, case-folded, invisible
characters removed, whitespace collapsed. Rows are grouped by a 128-bit BLAKE2b digest of that
form, so memory is one digest per distinct row.

**Near duplicates** use MinHash LSH, with parameters chosen for *short instruction texts*
rather than web documents. Web defaults (5-word shingles, Jaccard 0.8) miss what a user calls a
duplicate prompt: one substituted word in a 30-word prompt changes 5 of its 26 word 5-grams, so
its Jaccard is 21/31 = 0.68 and it is never found. Character 5-grams over the prompt's words are
far more tolerant: a substituted word of length L changes about L + 4 of them. Measured on random
prompts of common English words: one substituted word leaves a median Jaccard of 0.85 (20-word
prompts), 0.90 (30) and 0.95 (60); two leave 0.74, 0.82 and 0.91 (the lowest of 200: 0.65), while
two prompts that share only a 13-word template (same instruction, 12-40 words of different
content) have a median of 0.24 and at most 0.38. Word 5-grams give 0.52-0.84 for one edit.
Defaults: character 5-grams, 128 permutations, 32 bands x 4 rows, threshold 0.6: between the
two-edit variants (>= 0.65) and the template pairs, whose Jaccard reaches 0.55-0.58 only when
the template is more than half of the text (threshold 0.5 removed a few such pairs on the
planted set; 0.6 none). The LSH S-curve `P(candidate) = 1 - (1 - J^4)^32` is 0.87 at J = 0.5,
0.988 at J = 0.6 and 0.998 at J = 0.65; candidates are then verified on their full signatures
(estimated Jaccard >= threshold), so the many template pairs that share a band are not reported
(precision), and recall is set by the S-curve (tests/test_curate.py asserts both on a planted
set).

The signatures are datasketch's MinHash (scheme `affine32`, its permutations for the seed: the
same seed gives the same output), computed vectorised over each row's shingle hashes (rolling
32-bit hashes of the characters) instead of one Python call per shingle: the same values as
`datasketch.MinHash.update_batch` on the same hashes, ~1.5x faster (bench/curate.py). The LSH
index is a sort per band over a NumPy array of 64-bit band keys instead of datasketch's
`MinHashLSH` dictionaries of Python objects: within a bucket each row is paired with the `HEADS`
best-ranked rows before it (its possible keepers) rather than with every bucket-mate, and the
candidates are verified band by band, so memory holds the signatures (`num_perm` x 4 bytes = 512
bytes a row at 128), one band's keys, sort and candidates, and the duplicates found.
bench/curate.py measures it against `MinHashLSH` and gives the rows per GB.

**Clusters** are stars, not chains: rows are visited best first by the keep rule's rank; each
row not yet removed keeps itself and removes every verified neighbour ranked below it. So every
removed row is itself similar (>= threshold) to the row that was kept in its place, which is the
row its removal record names; union-find would remove chains whose ends share nothing.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from instill.data.curate.parallel import map_chunks
from instill.data.curate.text import normalise, words
from instill.errors import InstillError

#: Within an LSH bucket, each row is verified against the best-ranked `HEADS` rows of the bucket
#: (its likely keepers), which bounds the pairs of a huge bucket at HEADS x its size.
HEADS = 8
_PAIR_CHUNK = 16384  # pairs verified at once: [chunk, num_perm] temporaries stay ~16 MB


@dataclass(frozen=True, slots=True)
class DuplicateOf:
    """Row `removed` duplicates row `kept` (indices into the rows given)."""

    removed: int
    kept: int
    similarity: float


# --------------------------------------------------------------------------- exact


def digest(text: str) -> bytes:
    """128-bit digest of the normal form of `text`."""
    return hashlib.blake2b(normalise(text).encode("utf-8"), digest_size=16).digest()


def exact_duplicates(texts: Sequence[str], key: Callable[[int], Any]) -> list[DuplicateOf]:
    """Rows whose normalised text another row has; in each group the row with the lowest
    `key` stays.

    Args:
        texts: one text per row (the view being compared).
        key: the keep order of a row (by index): lowest is kept. Called only for rows that
            have a duplicate, so an expensive key (the quality checks) costs nothing for the rest.

    Returns:
        One record per removed row, in row order.
    """
    first: dict[bytes, int] = {}
    groups: dict[bytes, list[int]] = {}
    for i, text in enumerate(texts):
        d = digest(text)
        j = first.setdefault(d, i)
        if j != i:
            groups.setdefault(d, [j]).append(i)
    out = []
    for members in groups.values():
        kept = min(members, key=key)
        out += [DuplicateOf(m, kept, 1.0) for m in members if m != kept]
    return sorted(out, key=lambda d: d.removed)


# --------------------------------------------------------------------------- near


@dataclass(frozen=True)
class MinHashParams:
    """MinHash LSH settings (see the module docstring for the defaults and why)."""

    threshold: float = 0.6
    num_perm: int = 128
    bands: int = 32
    rows_per_band: int = 4
    shingle: str = "char"
    shingle_size: int = 5
    seed: int = 1

    @classmethod
    def from_config(cls, cfg) -> MinHashParams:
        """From a `NearDedupConfig`."""
        return cls(
            cfg.threshold,
            cfg.num_perm,
            cfg.bands,
            cfg.rows_per_band,
            cfg.shingle,
            cfg.shingle_size,
            cfg.seed,
        )

    def candidate_probability(self, jaccard: float) -> float:
        """Chance that two rows of this Jaccard similarity share at least one band."""
        return 1.0 - (1.0 - jaccard**self.rows_per_band) ** self.bands


def shingles(text: str, unit: str = "char", size: int = 5) -> set[str]:
    """Character (or word) n-grams of the text's words, normalised and joined by one space.

    Punctuation is dropped, so `What's` and `whats` differ only by the space, and a text shorter
    than one shingle is one shingle (itself); an empty text has none.
    """
    tokens = words(text)
    if unit == "word":
        if len(tokens) <= size:
            return {" ".join(tokens)} if tokens else set()
        return {" ".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1)}
    joined = " ".join(tokens)
    if len(joined) <= size:
        return {joined} if joined else set()
    return {joined[i : i + size] for i in range(len(joined) - size + 1)}


def _datasketch():
    try:
        import datasketch
    except ImportError as e:  # pragma: no cover - installed with instill[curate]
        raise InstillError(
            "near-duplicate detection (data.curate.near_dedup) needs datasketch: "
            "pip install 'instill[curate]'"
        ) from e
    return datasketch


_SHINGLE_BASE = np.uint32(0x01000193)  # FNV's odd multiplier, for the rolling shingle hash


def shingle_hashes(text: str, unit: str = "char", size: int = 5) -> np.ndarray:
    """The distinct 32-bit hashes of `shingles(text, unit, size)`, computed vectorised.

    Characters are the code points of the normalised, space-joined words (words: their xxh32
    hashes); each window of `size` is a rolling polynomial hash of them (mod 2^32).
    """
    tokens = words(text)
    if unit == "word":
        import xxhash

        h = xxhash.xxh32_intdigest
        units = np.fromiter((h(w.encode()) for w in tokens), np.uint32, len(tokens))
    else:
        units = np.frombuffer(" ".join(tokens).encode("utf-32-le"), dtype=np.uint32)
    if not len(units):
        return units
    width = min(size, len(units))  # a text shorter than one shingle is one shingle
    total = len(units) - width + 1
    acc = np.zeros(total, dtype=np.uint32)
    for k in range(width):
        acc = acc * _SHINGLE_BASE + units[k : k + total]
    return np.unique(acc)


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser, as datasketch's affine32 scheme applies it first."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


@functools.lru_cache(maxsize=8)
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's permutation parameters `(a, b)` (scheme affine32) for this seed."""
    datasketch = _datasketch()
    a, b = datasketch.MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    return np.asarray(a, dtype=np.uint32), np.asarray(b, dtype=np.uint32)


def signature(hashes: np.ndarray, params: MinHashParams) -> np.ndarray:
    """The MinHash signature of one row's shingle hashes: datasketch's `MinHash` with scheme
    `affine32` (`min_k(a_k * fmix32(h) + b_k mod 2^32)`), with the same permutations for the
    same seed, vectorised over the shingles instead of one Python call per shingle.

    `tests/test_curate.py` checks that it equals `datasketch.MinHash.update_batch` on the same
    hashes.
    """
    a, b = _permutations(params.num_perm, params.seed)
    if not len(hashes):
        return np.full(params.num_perm, np.uint32(0xFFFFFFFF), dtype=np.uint32)
    mixed = _fmix32(hashes.astype(np.uint32))[:, None]  # [shingles, 1]
    return (mixed * a + b).min(axis=0)  # [num_perm]


def signatures(texts: Sequence[str], params: MinHashParams) -> np.ndarray:
    """MinHash signatures, `[rows, num_perm]` uint32; rows without shingles are all 0xFFFFFFFF.

    A pure function of the texts and the parameters, so it can run on a batch anywhere (worker
    processes here; `distributed.py` runs it as an Arrow batch function).
    """
    out = np.empty((len(texts), params.num_perm), dtype=np.uint32)
    for i, text in enumerate(texts):
        out[i] = signature(shingle_hashes(text, params.shingle, params.shingle_size), params)
    return out


def signatures_parallel(
    texts: Sequence[str],
    params: MinHashParams,
    num_proc: int = 0,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """`signatures` over `num_proc` workers (0: every core for large inputs); same result."""
    if not texts:
        return np.zeros((0, params.num_perm), dtype=np.uint32)
    parts = map_chunks(
        functools.partial(signatures, params=params), texts, num_proc, 2000, progress
    )
    return np.concatenate(parts)


def band_keys(sig: np.ndarray, params: MinHashParams, band: int) -> np.ndarray:
    """One 64-bit key per row for one band: its `rows_per_band` values mixed together.

    Two rows share a key when their band values are equal (and, with probability 2^-64 per pair,
    by accident: such a pair fails verification like any other false candidate).
    """
    r = params.rows_per_band
    part = sig[:, band * r : (band + 1) * r].astype(np.uint64)
    key = np.full(len(sig), np.uint64(0x9E3779B97F4A7C15 ^ band), dtype=np.uint64)
    for col in range(r):
        key = _mix64((key ^ part[:, col]) * np.uint64(0xBF58476D1CE4E5B9))
    return key


def _mix64(x: np.ndarray) -> np.ndarray:
    """The 64-bit MurmurHash3 finaliser (a bijection), element-wise with wrap-around."""
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xFF51AFD7ED558CCD)
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xC4CEB9FE1A85EC53)
    return x ^ (x >> np.uint64(33))


def _valid_rows(sig: np.ndarray) -> np.ndarray:
    """Rows with at least one shingle (a row without any has an all-max signature)."""
    return np.flatnonzero(~(sig == np.uint32(0xFFFFFFFF)).all(axis=1))


def band_pairs(
    sig: np.ndarray, rank: np.ndarray, params: MinHashParams, band: int, valid: np.ndarray
) -> np.ndarray:
    """The candidate pairs `[pairs, 2]` of one band (better-ranked row first): each row with
    the `HEADS` best-ranked rows before it among those that share its band key."""
    keys = band_keys(sig, params, band)[valid]
    order = np.lexsort((rank[valid], keys))  # by key, then best rank first within a key
    skeys = keys[order]
    members = valid[order]
    cut = np.flatnonzero(skeys[1:] != skeys[:-1]) + 1
    starts = np.concatenate(([0], cut))
    lengths = np.diff(np.concatenate((starts, [len(skeys)])))
    multi = lengths > 1
    starts, lengths = starts[multi], lengths[multi]
    found = []
    for head in range(HEADS):
        ok = lengths > head + 1
        if not ok.any():
            break
        head_pos = starts[ok] + head
        counts = lengths[ok] - head - 1
        first = np.repeat(head_pos + 1, counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        found.append(np.stack((np.repeat(members[head_pos], counts), members[first + offsets]), 1))
    return np.concatenate(found).astype(np.int64) if found else np.zeros((0, 2), dtype=np.int64)


def candidate_pairs(sig: np.ndarray, rank: np.ndarray, params: MinHashParams) -> np.ndarray:
    """Every candidate pair of every band, deduplicated (better-ranked row first)."""
    valid = _valid_rows(sig)
    if len(valid) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    n = len(sig)
    codes = [
        p[:, 0] * n + p[:, 1]
        for b in range(params.bands)
        for p in [band_pairs(sig, rank, params, b, valid)]
    ]
    unique = np.unique(np.concatenate(codes))
    return np.stack((unique // n, unique % n), axis=1)


def verified_pairs(
    sig: np.ndarray, rank: np.ndarray, params: MinHashParams
) -> tuple[np.ndarray, np.ndarray, int]:
    """The candidate pairs at or above the threshold, with their estimated Jaccard.

    Verified band by band, so memory holds one band's candidates and the duplicates found,
    not every candidate of every band (a template shared by thousands of rows makes millions).

    Returns:
        `(pairs [k, 2], similarity [k], candidates checked)`.
    """
    valid = _valid_rows(sig)
    n = len(sig)
    codes, sims, checked = [], [], 0
    if len(valid) >= 2:
        for band in range(params.bands):
            pairs = band_pairs(sig, rank, params, band, valid)
            checked += len(pairs)
            sim = verify(sig, pairs)
            keep = sim >= params.threshold
            codes.append(pairs[keep, 0] * n + pairs[keep, 1])
            sims.append(sim[keep])
    if not codes:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0), checked
    unique, first = np.unique(np.concatenate(codes), return_index=True)
    return np.stack((unique // n, unique % n), axis=1), np.concatenate(sims)[first], checked


def verify(sig: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Estimated Jaccard similarity of each pair: the share of equal signature values."""
    out = np.empty(len(pairs), dtype=np.float64)
    for start in range(0, len(pairs), _PAIR_CHUNK):
        p = pairs[start : start + _PAIR_CHUNK]
        out[start : start + len(p)] = (sig[p[:, 0]] == sig[p[:, 1]]).mean(axis=1)
    return out


def star_clusters(
    pairs: np.ndarray, similarity: np.ndarray, rank: np.ndarray, threshold: float
) -> list[DuplicateOf]:
    """Greedy stars over the verified pairs: best-ranked rows first, each keeps itself and
    removes its not-yet-removed neighbours at similarity >= threshold."""
    keep = similarity >= threshold
    pairs, similarity = pairs[keep], similarity[keep]
    if not len(pairs):
        return []
    # Each pair is (better, worse) by rank; visit the better rows best first, and within one
    # row its neighbours most similar first (then by rank), so the record names the closest.
    order = np.lexsort((rank[pairs[:, 1]], -similarity, rank[pairs[:, 0]]))
    removed: dict[int, DuplicateOf] = {}
    for k in order:
        head, tail = int(pairs[k, 0]), int(pairs[k, 1])
        if head in removed or tail in removed:
            continue
        removed[tail] = DuplicateOf(tail, head, round(float(similarity[k]), 4))
    return sorted(removed.values(), key=lambda d: d.removed)


def near_duplicates(
    texts: Sequence[str],
    rank: Sequence[int],
    params: MinHashParams,
    num_proc: int = 0,
    progress: Callable[[int], None] | None = None,
) -> list[DuplicateOf]:
    """Near duplicates by MinHash LSH; in each star the best-ranked row stays.

    Args:
        texts: one text per row (the view being compared).
        rank: per row, its place in the keep order (lower is kept first; distinct).
        params: the MinHash LSH settings.
        num_proc: workers for the signatures (0: automatic).
        progress: advanced by the number of rows signed.

    Returns:
        One record per removed row, in row order, naming the kept row it is similar to.
    """
    rank_arr = np.asarray(rank, dtype=np.int64)
    sig = signatures_parallel(texts, params, num_proc, progress)
    pairs, similarity, _ = verified_pairs(sig, rank_arr, params)
    return star_clusters(pairs, similarity, rank_arr, params.threshold)
