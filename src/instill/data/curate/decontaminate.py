"""Decontamination: training rows that contain evaluation prompts, by word n-gram overlap.

The data layer never imports evaluation: the caller (`instill.eval.prompts`, used by the
command line, `train` and the pipelines) collects the prompts of every eval task the config
names and passes them in as plain `EvalPrompt`s.

How a row is matched (GPT-3's 13-gram overlap, made safe for instruction data):

- Texts are split into words after normalisation (NFKC, case-folded, `\\w+` runs), so casing,
  punctuation and spacing do not hide a copy. Each eval prompt contributes its word n-grams
  (default n = 13; 8-13 allowed). A prompt shorter than n words contributes itself, the whole
  word sequence, when it has at least `min_prompt_words` words; shorter ones are too generic to
  match ("Translate to French:") and are skipped and counted in the report.
- **Boilerplate guard.** An n-gram found in at least `boilerplate_min_prompts` (default 10)
  distinct eval prompts is a template or a public phrase ("Read the passage below and answer the
  question ...") and never counts; nor does an n-gram with more than half of its words inside
  such boilerplate (one that straddles the template and the first content word). Without it
  every training row that shares a benchmark's instructions would be flagged.
- **Score** of a (row, prompt) pair: the share of the prompt's counted n-grams that occur in the
  row. A row is removed when it shares at least one counted n-gram with some prompt and its best
  score is >= `min_score` (default 0: any shared 13-gram, i.e. 13 identical consecutive words
  outside boilerplate). Its removal record names that prompt (task, id, text), the score, the
  number of shared n-grams and one of them.

Hashing is vectorised: each word gets a stable 64-bit xxh64 hash, and the n-grams of a whole
batch of rows are rolling polynomial hashes over the concatenated word hashes, so the cost per row
is one regex and one hash per word. The index is a sorted NumPy array of the counted n-gram
hashes with, for each, the prompts that have it (CSR arrays): ~16 bytes per eval n-gram.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from instill.data.curate.parallel import map_chunks
from instill.data.curate.text import words

_BASE = np.uint64(0x100000001B3)  # the multiplier of the rolling hash (odd)


@dataclass(frozen=True, slots=True)
class EvalPrompt:
    """One evaluation prompt, as plain text: the task's name, the prompt's id and its user turns."""

    task: str
    id: str
    text: str


@dataclass(frozen=True, slots=True)
class Contamination:
    """Row `row` contains eval prompt `prompt` (indices into the rows and prompts given)."""

    row: int
    prompt: int
    score: float
    shared: int
    ngram: str


@dataclass
class IndexStats:
    """What the eval index holds, for the report."""

    prompts: int = 0
    tasks: dict[str, int] = field(default_factory=dict)
    prompts_matched_whole: int = 0
    prompts_skipped_short: int = 0
    prompts_all_boilerplate: int = 0
    ngrams: int = 0
    boilerplate_ngrams: int = 0
    boilerplate_examples: list[str] = field(default_factory=list)


def _word_hashes(tokens: list[str]) -> np.ndarray:
    import xxhash

    h = xxhash.xxh64_intdigest
    return np.fromiter((h(w.encode()) for w in tokens), np.uint64, len(tokens))


def _mix64(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xFF51AFD7ED558CCD)
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xC4CEB9FE1A85EC53)
    return x ^ (x >> np.uint64(33))


def window_hashes(
    flat: np.ndarray, offsets: np.ndarray, length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hashes of every `length`-word window that lies inside one text.

    Args:
        flat: the word hashes of several texts, concatenated.
        offsets: `[texts + 1]` start of each text in `flat` (and the end).
        length: words per window.

    Returns:
        `(hashes, text_ids, positions)`: one entry per window, the text it is in and its first
        word's position in that text.
    """
    total = len(flat) - length + 1
    if total <= 0:
        empty = np.zeros(0, dtype=np.int64)
        return np.zeros(0, dtype=np.uint64), empty, empty
    acc = np.zeros(total, dtype=np.uint64)
    for k in range(length):
        acc = acc * _BASE + flat[k : k + total]
    acc = _mix64(acc ^ np.uint64(length))
    starts = np.arange(total)
    text_ids = np.searchsorted(offsets, starts, side="right") - 1
    inside = starts + length <= offsets[text_ids + 1]
    return acc[inside], text_ids[inside], (starts - offsets[text_ids])[inside]


def _flatten(texts: Sequence[str]) -> tuple[list[list[str]], np.ndarray, np.ndarray]:
    tokens = [words(t) for t in texts]
    lengths = np.fromiter((len(t) for t in tokens), np.int64, len(tokens))
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    flat = _word_hashes([w for t in tokens for w in t])
    return tokens, flat, offsets


def _frequent(hashes: np.ndarray, owners: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The hashes found in at least `limit` distinct owners, and in how many."""
    pairs = np.unique(np.stack((hashes, owners.astype(np.uint64)), axis=1), axis=0)
    uniq, df = np.unique(pairs[:, 0], return_counts=True)
    return uniq[df >= limit], df[df >= limit]


class EvalIndex:
    """The counted n-grams of a set of eval prompts, with the boilerplate guard applied.

    Args:
        prompts: the eval prompts.
        n: words per n-gram.
        boilerplate_min_prompts: an n-gram in at least this many distinct prompts is boilerplate.
        boilerplate_share: ... and in at least this share of all prompts.
        min_prompt_words: prompts shorter than `n` words with at least this many words are
            matched as one whole-prompt n-gram; shorter ones are skipped.
    """

    def __init__(
        self,
        prompts: Sequence[EvalPrompt],
        n: int = 13,
        boilerplate_min_prompts: int = 10,
        boilerplate_share: float = 0.0,
        min_prompt_words: int = 6,
    ) -> None:
        self.prompts = list(prompts)
        self.n = n
        stats = IndexStats(prompts=len(self.prompts))
        for p in self.prompts:
            stats.tasks[p.task] = stats.tasks.get(p.task, 0) + 1
        tokens, flat, offsets = _flatten([p.text for p in self.prompts])
        lengths = np.diff(offsets)
        limit = max(boilerplate_min_prompts, math.ceil(boilerplate_share * len(self.prompts)))
        h, ids, pos = window_hashes(flat, offsets, n)
        boiler_hashes, boiler_df = _frequent(h, ids, limit)
        # Positions covered by boilerplate n-grams; an n-gram counts only when at least half of
        # its words lie outside them, so one that straddles a template and the first word of
        # the content ("... answer in one word. Passage: although") does not count either.
        start = offsets[ids] + pos
        diff = np.zeros(len(flat) + 1, dtype=np.int64)
        is_boiler = np.isin(h, boiler_hashes)
        np.add.at(diff, start[is_boiler], 1)
        np.add.at(diff, start[is_boiler] + n, -1)
        own = np.concatenate(([0], np.cumsum(np.cumsum(diff)[:-1] == 0)))
        counted = (own[start + n] - own[start]) * 2 >= n
        grams, owners = [h[counted]], [ids[counted]]
        short = np.flatnonzero((lengths < n) & (lengths >= min_prompt_words))
        stats.prompts_matched_whole = len(short)
        stats.prompts_skipped_short = int((lengths < min_prompt_words).sum())
        self.lengths = sorted({int(lengths[i]) for i in short})  # window lengths besides n
        for length in self.lengths:
            wh, wids, _ = window_hashes(flat, offsets, length)
            whole = lengths[wids] == length  # the window that is the whole prompt
            wh, wids = wh[whole], wids[whole]
            frequent, frequent_df = _frequent(wh, wids, limit)
            boiler_hashes = np.concatenate((boiler_hashes, frequent))
            boiler_df = np.concatenate((boiler_df, frequent_df))
            keep = ~np.isin(wh, frequent)
            grams.append(wh[keep])
            owners.append(wids[keep])
        gram = np.concatenate(grams)
        owner = np.concatenate(owners).astype(np.int64)
        # One (n-gram, prompt) pair per prompt that has it, sorted by n-gram: CSR arrays.
        order = np.lexsort((owner, gram))
        gram, owner = gram[order], owner[order]
        first = np.ones(len(gram), dtype=bool)
        first[1:] = (gram[1:] != gram[:-1]) | (owner[1:] != owner[:-1])
        gram, owner = gram[first], owner[first]
        self.grams, df = np.unique(gram, return_counts=True)
        self.owner = owner
        self.starts = np.concatenate(([0], np.cumsum(df)))
        self.denominator = np.bincount(self.owner, minlength=len(self.prompts))
        stats.ngrams = len(self.grams)
        stats.boilerplate_ngrams = len(boiler_hashes)
        stats.boilerplate_examples = self._examples(
            boiler_hashes, boiler_df, tokens, flat, [n, *self.lengths]
        )
        stats.prompts_all_boilerplate = int(
            ((self.denominator == 0) & (lengths >= min_prompt_words)).sum()
        )
        self.stats = stats

    def _examples(self, hashes, df, tokens, flat, lens, limit: int = 5) -> list[str]:
        """The most frequent boilerplate n-grams as text, for the report."""
        if not len(hashes):
            return []
        top = hashes[np.argsort(-df, kind="stable")[:limit]]
        wanted = {int(h): None for h in top}
        offsets = np.concatenate(([0], np.cumsum([len(t) for t in tokens])))
        for length in lens:
            h, ids, pos = window_hashes(flat, offsets, length)
            for k in np.flatnonzero(np.isin(h, top)):
                key = int(h[k])
                if wanted[key] is None:
                    i, p = int(ids[k]), int(pos[k])
                    wanted[key] = " ".join(tokens[i][p : p + length])
        counts = dict(zip((int(h) for h in hashes), (int(c) for c in df), strict=True))
        return [f"{text} ({counts[h]} prompts)" for h, text in wanted.items() if text]

    def match(self, texts: Sequence[str], min_score: float = 0.0) -> list[Contamination]:
        """The rows of `texts` (relative indices) that contain a prompt, with the best prompt."""
        if not len(self.grams) or not texts:
            return []
        tokens, flat, offsets = _flatten(texts)
        found = []
        for length in (self.n, *self.lengths):
            h, ids, pos = window_hashes(flat, offsets, length)
            at = np.searchsorted(self.grams, h)
            at[at == len(self.grams)] = 0
            hit = self.grams[at] == h
            found.append((at[hit], ids[hit], pos[hit], length))
        gram_idx = np.concatenate([f[0] for f in found])
        if not len(gram_idx):
            return []
        row_ids = np.concatenate([f[1] for f in found])
        positions = np.concatenate([f[2] for f in found])
        win_len = np.concatenate([np.full(len(f[0]), f[3]) for f in found])
        # A row that has an n-gram twice shares it once.
        first = np.unique(row_ids * len(self.grams) + gram_idx, return_index=True)[1]
        gram_idx, row_ids = gram_idx[first], row_ids[first]
        positions, win_len = positions[first], win_len[first]
        # Expand each (row, n-gram) hit to the prompts that have the n-gram.
        per = self.starts[gram_idx + 1] - self.starts[gram_idx]
        hit_of = np.repeat(np.arange(len(gram_idx)), per)
        within = np.arange(per.sum()) - np.repeat(np.cumsum(per) - per, per)
        prompt = self.owner[self.starts[gram_idx][hit_of] + within]
        row = row_ids[hit_of]
        code = row * len(self.prompts) + prompt
        pairs, pair_first, shared = np.unique(code, return_index=True, return_counts=True)
        pair_row, pair_prompt = pairs // len(self.prompts), pairs % len(self.prompts)
        score = shared / self.denominator[pair_prompt]
        # Best prompt per row: highest score, then most shared n-grams, then first prompt.
        order = np.lexsort((pair_prompt, -shared, -score, pair_row))
        best = order[np.concatenate(([True], pair_row[order][1:] != pair_row[order][:-1]))]
        out = []
        for k in best:
            if score[k] < min_score:
                continue
            r = int(pair_row[k])
            h = hit_of[pair_first[k]]
            p, ln = int(positions[h]), int(win_len[h])
            out.append(
                Contamination(
                    r,
                    int(pair_prompt[k]),
                    round(float(score[k]), 4),
                    int(shared[k]),
                    " ".join(tokens[r][p : p + ln]),
                )
            )
        return out


_INDEX: dict[str, object] = {}  # the index and min_score, inherited by forked workers


def _match_chunk(texts: Sequence[str]) -> list[Contamination]:
    index: EvalIndex = _INDEX["index"]  # type: ignore[assignment]
    return index.match(texts, float(_INDEX["min_score"]))  # type: ignore[arg-type]


def contaminated_rows(
    texts: Sequence[str],
    index: EvalIndex,
    min_score: float = 0.0,
    num_proc: int = 0,
    progress: Callable[[int], None] | None = None,
    chunk_rows: int = 2000,
) -> list[Contamination]:
    """`index.match` over every row, on `num_proc` workers (0: automatic); rows in order."""
    _INDEX.update(index=index, min_score=min_score)
    try:
        parts = map_chunks(_match_chunk, texts, num_proc, chunk_rows, progress)
    finally:
        _INDEX.clear()
    out = []
    for k, part in enumerate(parts):
        base = k * chunk_rows
        out += [Contamination(c.row + base, c.prompt, c.score, c.shared, c.ngram) for c in part]
    return out
