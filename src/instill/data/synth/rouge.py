"""ROUGE-L between instructions, and an index that finds an instruction's closest match fast.

Self-Instruct keeps a generated instruction only if its ROUGE-L F-measure against every
instruction kept so far is below 0.7. Scanning the whole pool per candidate is one LCS per kept
instruction, quadratic over a run. `RougeIndex` gives exactly the brute-force answer (the same
decision, the same best score, ties to the earliest added text) while computing few LCSs.

Scores agree with the `rouge-score` package (`RougeScorer(["rougeL"], use_stemmer=False)`):
`rouge_tokens` is its default tokenizer without stemming, and `rouge_l` its F-measure. ROUGE-L F
is symmetric in its two arguments, so which text is the "target" does not matter.

Why the pruning is safe. For token lists `a` (the query, `la` tokens) and `b` (`lb` tokens) with
LCS length `L`, P = L/la and R = L/lb, so F = 2PR/(P+R) = 2L/(la+lb). Three bounds follow:

1. LCS <= m, the multiset overlap `sum_t min(count_a(t), count_b(t))`, so F <= 2m/(la+lb).
2. L <= min(la, lb), so F <= 2 min(la, lb)/(la+lb) (the length filter).
3. Minimum overlap. F >= theta means 2L >= theta (la + lb) >= theta (la + L) (as lb >= L), i.e.
   L >= theta la / (2 - theta). L is an integer, so m >= L >= k_min = ceil(theta la / (2 - theta)).
   For 0 < theta <= 1 and la >= 1, 1 <= k_min <= la (theta / (2 - theta) <= 1). At most la - m
   query positions hold a token that `b` lacks entirely, so ANY la - k_min + 1 query positions
   include one whose token `b` has (prefix filtering). The index probes the postings of the
   rarest query tokens (by current document frequency, counting repeats) until they cover
   la - k_min + 1 positions; a text outside those postings cannot reach the threshold.
   Tokens never seen before have no postings and cover positions for free.

Candidates from the probe then pass the length filter and the overlap bound before any LCS, in
order of falling bound, and the search stops once the bound is below the best score found.

Floating point: brute force decides `F >= theta` on a float F. Every bound is compared with
slack `_SLACK` (1e-9) in the direction that keeps candidates, and k_min is computed with the same
slack, so rounding can only make the index look at more texts, never drop one that brute force
would keep. The final decision uses the very same float expression as `rouge_l`.

Complexity, honestly: insertion is O(la). A query costs O(u log u) to choose probes (u distinct
tokens), O(sum of the probed posting lengths) to collect candidates, O(u) per candidate for the
overlap bound, and O(la) big-integer operations (each O(lb / 64) words) per LCS actually run.
There is no worst-case guarantee below a full scan: a pool of near-identical texts, or a query
made only of very common words, makes most texts candidates. On instruction-like text (Zipfian
words, a few rare ones per instruction) the probes are short and most candidates fail the
bounds; `stats` counts what was done so a run can report it.

LCS uses the bit-parallel algorithm of Allison-Dix / Hyyrö ("Bit-parallel LCS-length
computation revisited", 2004): one row of the DP table is a Python integer, so an LCS is
O(len(a)) integer operations instead of O(len(a) len(b)) interpreted steps. It returns exactly
what the textbook DP returns; the tests check it against the DP.

Empty token lists: a text with no tokens (e.g. only punctuation) has LCS 0 with everything, so
F = 0 (as in `rouge-score`) and it matches nothing, as a query or as an indexed text.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "RougeIndex",
    "RougeIndexStats",
    "RougeMatch",
    "lcs_length",
    "min_overlap",
    "rouge_l",
    "rouge_tokens",
]

_NON_ALPHANUMERIC = re.compile(r"[^a-z0-9]+")

# Slack of every float comparison in the pruning, always in the direction that keeps candidates.
_SLACK = 1e-9


def rouge_tokens(text: str) -> list[str]:
    """Tokens as `rouge-score`'s default tokenizer makes them, without stemming.

    Lowercase, replace every run of characters other than `a-z0-9` with a space, split. After the
    replacement only `a-z0-9` runs remain, so every token already matches `^[a-z0-9]+$` (the
    package's final check). Non-ASCII letters are separators: `"café"` is `["caf"]`.

    Args:
        text: any text.

    Returns:
        The tokens in order (empty for a text without letters or digits).
    """
    return _NON_ALPHANUMERIC.sub(" ", text.lower()).split()


def _match_masks(tokens: Sequence[str]) -> dict[str, int]:
    """Bit i of `masks[t]` is set when `tokens[i] == t` (the bit-parallel LCS's match vectors)."""
    masks: dict[str, int] = {}
    bit = 1
    for token in tokens:
        masks[token] = masks.get(token, 0) | bit
        bit <<= 1
    return masks


def _lcs_bits(a: Sequence[str], masks: Mapping[str, int], n: int) -> int:
    """LCS length of `a` and the `n`-token sequence whose match vectors are `masks`.

    `v` holds one DP row: its zero bits mark the columns where the row's value steps up, so the
    LCS is the number of zero bits after the last row (Hyyrö 2004).
    """
    full = (1 << n) - 1
    v = full
    get = masks.get
    for token in a:
        u = v & get(token, 0)
        v = ((v + u) | (v - u)) & full
    return n - v.bit_count()


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists.

    Bit-parallel: O(max(len(a), len(b))) operations on min(len(a), len(b))-bit integers, with
    the same result as the O(len(a) * len(b)) dynamic programme.

    Args:
        a: tokens (any hashable items compared with `==`).
        b: tokens.

    Returns:
        The LCS length, 0 when either list is empty.
    """
    if len(b) > len(a):
        a, b = b, a  # the shorter list sets the integers' width
    if not b:
        return 0
    return _lcs_bits(a, _match_masks(b), len(b))


def _fmeasure(lcs: int, la: int, lb: int) -> float:
    """`rouge-score`'s F-measure for an LCS of `lcs` tokens between lists of `la` and `lb`."""
    if lcs == 0:
        return 0.0
    precision, recall = lcs / la, lcs / lb
    return 2 * precision * recall / (precision + recall)


def rouge_l(a: Sequence[str], b: Sequence[str]) -> float:
    """ROUGE-L F-measure (beta = 1) of two token lists, as `rouge-score` computes it.

    Args:
        a: tokens of one text (e.g. from `rouge_tokens`).
        b: tokens of the other; the score is symmetric.

    Returns:
        2PR/(P+R) with P = LCS/len(a), R = LCS/len(b); 0.0 when the LCS is 0 (including when
        either list is empty).
    """
    return _fmeasure(lcs_length(a, b), len(a), len(b))


def min_overlap(n_tokens: int, threshold: float) -> int:
    """The fewest shared tokens a text of `n_tokens` tokens needs to reach `threshold` ROUGE-L F.

    k_min = ceil(threshold * n / (2 - threshold)) (see the module docstring), computed with a
    little slack so that float rounding can only lower it, which keeps the pruning safe.

    Args:
        n_tokens: length of the query, >= 1.
        threshold: in (0, 1].

    Returns:
        An integer in [1, n_tokens].
    """
    k = math.ceil(threshold * n_tokens / (2.0 - threshold) - _SLACK)
    return min(max(k, 1), n_tokens)


@dataclass(frozen=True)
class RougeMatch:
    """The closest indexed text to a query, at or above the threshold.

    Attributes:
        id: what `RougeIndex.add` returned for it.
        score: its ROUGE-L F against the query.
        text: the indexed text.
    """

    id: int
    score: float
    text: str


@dataclass
class RougeIndexStats:
    """What the index did, for reports.

    Attributes:
        queries: `best_match` calls.
        candidates: texts found by probing postings, summed over queries (before the bounds).
        lcs_computed: LCSs actually run, summed over queries (brute force runs one per indexed
            text per query).
    """

    queries: int = 0
    candidates: int = 0
    lcs_computed: int = 0


class RougeIndex:
    """Texts indexed for "which indexed text has the highest ROUGE-L F with this one".

    `best_match` returns what a scan over every indexed text would: the highest-scoring text if
    its score is >= `threshold` (ties go to the earliest added), else None. See the module
    docstring for why the pruning never changes that answer.

    Example:
        >>> index = RougeIndex(threshold=0.7)
        >>> index.add("Write a poem about the sea.")
        0
        >>> index.best_match("write a poem about the sea").score
        1.0
        >>> index.best_match("List three prime numbers.") is None
        True
    """

    def __init__(self, threshold: float = 0.7) -> None:
        """Create an empty index.

        Args:
            threshold: the ROUGE-L F at or above which two texts match, in (0, 1] (Self-Instruct
                uses 0.7).

        Raises:
            ValueError: a threshold that is not a number in (0, 1].
        """
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, (int, float))
            or not 0 < threshold <= 1
        ):
            raise ValueError(
                f"RougeIndex threshold must be a number in (0, 1], got {threshold!r}; "
                "Self-Instruct uses 0.7 (at 0 every pair would match)"
            )
        self.threshold = float(threshold)
        self.stats = RougeIndexStats()
        self._texts: list[str] = []
        self._lengths: list[int] = []
        self._counts: list[dict[str, int]] = []
        self._masks: list[dict[str, int]] = []
        self._postings: dict[str, list[int]] = {}

    def __len__(self) -> int:
        return len(self._texts)

    def __getitem__(self, text_id: int) -> str:
        """The text added under `text_id`."""
        return self._texts[text_id]

    def add(self, text: str) -> int:
        """Index a text (duplicates are indexed again; check `best_match` first to deduplicate).

        Args:
            text: the text; one without tokens is stored but never matches.

        Returns:
            Its id: 0 for the first text added, then 1, 2, ...
        """
        tokens = rouge_tokens(text)
        text_id = len(self._texts)
        counts = dict(Counter(tokens))
        self._texts.append(text)
        self._lengths.append(len(tokens))
        self._counts.append(counts)
        self._masks.append(_match_masks(tokens))
        for token in counts:
            self._postings.setdefault(token, []).append(text_id)
        return text_id

    def best_match(self, text: str) -> RougeMatch | None:
        """The indexed text with the highest ROUGE-L F against `text`, if it reaches the threshold.

        Args:
            text: the query.

        Returns:
            The best match (ties to the smallest id), or None when no indexed text scores
            >= `threshold` (always None for a query without tokens).
        """
        self.stats.queries += 1
        query = rouge_tokens(text)
        la = len(query)
        if la == 0 or not self._texts:
            return None
        theta = self.threshold
        query_counts = Counter(query)
        postings = self._postings

        # Probe the rarest tokens until they cover la - k_min + 1 query positions.
        need = la - min_overlap(la, theta) + 1
        covered = 0
        candidate_ids: set[int] = set()
        for token in sorted(query_counts, key=lambda t: (len(postings.get(t, ())), t)):
            candidate_ids.update(postings.get(token, ()))
            covered += query_counts[token]
            if covered >= need:
                break
        self.stats.candidates += len(candidate_ids)

        # Bounds: length filter, then multiset overlap; keep (bound, id) for the survivors.
        floor = theta - _SLACK
        lengths, all_counts = self._lengths, self._counts
        items = list(query_counts.items())
        survivors: list[tuple[float, int]] = []
        for text_id in candidate_ids:
            lb = lengths[text_id]
            if 2 * min(la, lb) / (la + lb) < floor:
                continue
            counts = all_counts[text_id]
            overlap = 0
            for token, n in items:
                c = counts.get(token)
                if c:
                    overlap += n if n < c else c
            bound = 2 * overlap / (la + lb)
            if bound >= floor:
                survivors.append((bound, text_id))
        survivors.sort(key=lambda s: (-s[0], s[1]))

        best_id, best_score = -1, -1.0
        for bound, text_id in survivors:
            if bound + _SLACK < best_score:
                break  # no later survivor can reach (or tie) the best score
            lb = lengths[text_id]
            self.stats.lcs_computed += 1
            score = _fmeasure(_lcs_bits(query, self._masks[text_id], lb), la, lb)
            if score >= theta and (
                score > best_score or (score == best_score and text_id < best_id)
            ):
                best_id, best_score = text_id, score
        if best_id < 0:
            return None
        return RougeMatch(best_id, best_score, self._texts[best_id])
