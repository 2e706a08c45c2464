"""Curation: planted near duplicates and contamination, removal records, reports, CLI, config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from instill.cli import main
from instill.config import CurateConfig, load_config, validate_config
from instill.data.conversation import Conversation, Message
from instill.data.curate import EvalPrompt, curate
from instill.data.curate.decontaminate import EvalIndex, contaminated_rows
from instill.data.curate.dedup import MinHashParams, near_duplicates, shingles
from instill.data.curate.filters import QualityFilter
from instill.data.curate.mix import mix_source
from instill.errors import ConfigError, InstillError

from .conftest import base_config
from .planted import contamination_scores, contamination_set, near_dup_scores, near_dup_set

ROOT = Path(__file__).resolve().parents[1]


def conv(user: str, answer: str, where: str = "t.jsonl:line 1") -> Conversation:
    return Conversation((Message("user", user), Message("assistant", answer)), source=where)


# --------------------------------------------------------------------------- planted sets


def test_planted_near_duplicates_precision_and_recall_at_the_defaults():
    """One- and two-word edits of 20-60-word prompts are found; same-template prompts are not."""
    params = MinHashParams.from_config(CurateConfig().near_dedup)
    for seed in (0, 1):
        s = near_dup_set(edit_counts=(1, 2), seed=seed)
        found = near_duplicates(s.texts, list(range(len(s.texts))), params, num_proc=1)
        scores = near_dup_scores(s, {d.removed: d.kept for d in found})
        assert scores["precision"] >= 0.95, scores
        assert scores["recall"] >= 0.9, scores
        assert scores["recall_by_edits"]["1 edits"] >= 0.95, scores
        assert scores["recall_by_edits"]["2 edits"] >= 0.95, scores
        assert scores["recall_by_edits"]["copy"] == 1.0, scores
        assert scores["hard_negatives_removed"] == 0, scores


def test_web_document_defaults_miss_one_word_edits():
    """Why the defaults are not datatrove's: word 5-grams at Jaccard 0.8 miss most edits."""
    s = near_dup_set(edit_counts=(1,), bases=60, seed=0)
    web = MinHashParams(threshold=0.8, shingle="word", shingle_size=5, bands=14, rows_per_band=8)
    found = near_duplicates(s.texts, list(range(len(s.texts))), web, num_proc=1)
    scores = near_dup_scores(s, {d.removed: d.kept for d in found})
    assert scores["recall_by_edits"]["1 edits"] < 0.5, scores


def test_a_one_word_edit_of_a_30_word_prompt_keeps_a_high_char_jaccard():
    words = "the quick brown fox jumps over the lazy dog near the quiet river bank while " * 3
    a = " ".join(words.split()[:30])
    b = a.replace("quiet", "noisy", 1)
    sa, sb = shingles(a), shingles(b)
    assert len(sa & sb) / len(sa | sb) > 0.8
    wa, wb = shingles(a, "word", 5), shingles(b, "word", 5)
    assert len(wa & wb) / len(wa | wb) < 0.8


def test_signatures_are_datasketchs_minhash():
    """The vectorised signature equals datasketch's MinHash (affine32) on the same hashes."""
    import datasketch

    from instill.data.curate.dedup import shingle_hashes, signature

    params = MinHashParams()
    for text in ("Write a short poem about autumn leaves in the park.", "hi", "ünïcode wörds"):
        hashes = shingle_hashes(text)
        assert len(hashes) == len(shingles(text))
        m = datasketch.MinHash(num_perm=128, seed=params.seed, hashfunc=int, scheme="affine32")
        m.update_batch([int(h) for h in hashes])
        assert (signature(hashes, params) == m.hashvalues).all()


def test_planted_contamination_recall_and_false_positive_rate():
    s = contamination_set(prompts=60, seed=0)
    prompts = [EvalPrompt("planted", str(i), p) for i, p in enumerate(s.prompts)]
    for n, edited in ((13, 0.05), (8, 0.95)):
        index = EvalIndex(prompts, n)
        found = contaminated_rows(s.texts, index, 0.0, num_proc=1)
        scores = contamination_scores(s, {c.row for c in found})
        assert scores["recall_pasted"] == 1.0, scores
        assert scores["recall_substring"] >= 0.95, scores
        assert scores["recall_paraphrased"] >= 0.95, scores
        # A word changed every 9 words leaves 8-word gaps: 8-grams find them, 13-grams cannot.
        assert (scores["recall_edited"] >= edited) if n == 8 else scores["recall_edited"] <= edited
        assert scores["false_positive_rate"] <= 0.01, scores  # rows sharing only boilerplate
        # The template and the common phrase are recognised as boilerplate.
        assert index.stats.boilerplate_ngrams > 0
        assert any("passage below" in b for b in index.stats.boilerplate_examples)


def test_without_the_boilerplate_guard_template_rows_are_flagged():
    s = contamination_set(prompts=60, seed=0)
    prompts = [EvalPrompt("planted", str(i), p) for i, p in enumerate(s.prompts)]
    index = EvalIndex(prompts, 13, boilerplate_min_prompts=1000)  # guard off in effect
    found = contaminated_rows(s.texts, index, 0.0, num_proc=1)
    assert contamination_scores(s, {c.row for c in found})["false_positive_rate"] > 0.3


def test_short_eval_prompts_match_as_a_whole():
    prompts = [
        EvalPrompt("qa", "q1", "What is the capital of France? Answer in one word."),
        EvalPrompt("qa", "q2", "Say hi."),  # too short: skipped
    ]
    index = EvalIndex(prompts, 13, min_prompt_words=6)
    assert index.stats.prompts_matched_whole == 1 and index.stats.prompts_skipped_short == 1
    texts = [
        "Quiz time! what is the capital of FRANCE? answer in one word!",
        "What is the capital of Spain? Answer in one word.",
        "Say hi. Then say bye.",
    ]
    found = contaminated_rows(texts, index, 0.0, num_proc=1)
    assert [(c.row, c.prompt, c.score) for c in found] == [(0, 0, 1.0)]


# --------------------------------------------------------------------------- the stage


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _chat(user: str, answer: str) -> dict:
    return {
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    }


def test_removal_records_name_file_line_step_and_what_they_collided_with(tmp_path):
    from instill.data.prepare import read_conversations

    path = _jsonl(
        tmp_path / "d.jsonl",
        [
            _chat("Name three rivers of Europe and the seas they flow into.", "Rhine, Danube, Po."),
            _chat(
                "name three  rivers of europe and the seas they flow into.", "Rhine, Danube, Po."
            ),
            _chat(
                "Name three rivers of Europe and the seas that they flow into.",
                "The Rhine (North Sea), the Danube (Black Sea) and the Po (Adriatic).",
            ),
            _chat("Tell me a joke about cats.", "As an AI language model, I cannot tell jokes."),
            _chat("Quick one: What is the capital of France? Answer in one word.", "Paris"),
        ],
    )
    cfg = validate_config(
        base_config(
            [{"path": str(path)}],
            tmp_path,
            curate={
                "near_dedup": {"enabled": True},
                "filters": {"enabled": True},
                "decontaminate": {"enabled": True},
            },
        )
    )
    read = read_conversations(cfg.data)
    prompts = [EvalPrompt("qa", "q1", "What is the capital of France? Answer in one word.")]
    result = curate(read.per_source, cfg.data.curate, eval_prompts=prompts, source_names=["d"])
    by_line = {r.location.rsplit(":", 1)[1]: r for r in result.removed}
    assert sorted(by_line) == ["line 1", "line 2", "line 4", "line 5"]
    exact = by_line["line 2"]
    assert (exact.step, exact.reason) == ("exact_dedup", "exact_duplicate")
    assert exact.location == f"{path}:line 2"
    assert exact.duplicate_of["location"] == f"{path}:line 1"
    # Line 1 and line 3 are near duplicates; `quality` keeps the longer answer (line 3).
    near = by_line["line 1"]
    assert (near.step, near.reason) == ("near_dedup", "near_duplicate")
    assert near.duplicate_of["location"] == f"{path}:line 3" and near.similarity >= 0.6
    assert (by_line["line 4"].step, by_line["line 4"].reason) == ("filters", "refusal")
    contaminated = by_line["line 5"]
    assert (contaminated.step, contaminated.reason) == ("decontaminate", "contaminated")
    assert contaminated.eval_prompt == {"task": "qa", "id": "q1", "text": prompts[0].text}
    assert contaminated.score == 1.0 and "capital of france" in contaminated.ngram
    assert [c.source for c in result.kept] == [f"{path}:line 3"]
    total = result.stats["funnel"]["total"]
    assert [total[k] for k in ("read", "valid", "exact_dedup", "near_dedup", "filters")] == [
        5,
        5,
        4,
        3,
        2,
    ]
    assert (total["decontaminate"], total["kept"]) == (1, 1)


@pytest.mark.parametrize("keep", ["first", "longest_response", "quality"])
def test_keep_rules(keep):
    rows = [
        conv("Describe the water cycle in simple words.", "Water evaporates.", "a:line 1"),
        conv(
            "describe the  water cycle in SIMPLE words.",
            "As an AI language model, I explain: "
            "water evaporates, condenses into clouds and falls again as rain or snow.",
            "a:line 2",
        ),
        conv(
            "Describe the water cycle in simple words.\n",
            "Water evaporates, forms clouds and falls as rain.",
            "a:line 3",
        ),
    ]
    cfg = CurateConfig.model_validate({"exact_dedup": {"scope": "user"}, "keep": keep})
    kept = curate([rows], cfg).kept
    expected = {"first": "a:line 1", "longest_response": "a:line 2", "quality": "a:line 3"}
    assert [c.source for c in kept] == [expected[keep]]


def test_exact_dedup_scopes():
    rows = [
        conv("Same prompt", "answer one", "a:line 1"),
        conv("same   PROMPT", "answer two", "a:line 2"),
    ]
    assert len(curate([rows], CurateConfig()).kept) == 2  # whole conversation differs
    for scope in ("user", "first_user"):
        cfg = CurateConfig.model_validate({"exact_dedup": {"scope": scope}, "keep": "first"})
        assert [c.source for c in curate([rows], cfg).kept] == ["a:line 1"]


def test_quality_filters_each_reason_and_good_short_rows_pass():
    cfg = CurateConfig().filters.model_copy(update={"max_response_tokens": 60})
    check = QualityFilter(cfg).check
    bad = {
        "empty_response": conv("Say something.", "\u200b \u00ad"),
        "response_too_long": conv("Count.", " ".join(str(i) for i in range(100))),
        "repetitive_response": conv("Describe rain.", "it rains and it pours " * 8),
        "echoes_instruction": conv(
            "Please repeat after me: the rain in Spain stays mainly in the plain",
            "Please repeat after me: the rain in Spain stays mainly in the plain",
        ),
        "refusal": conv("Rate this film.", "I'm sorry, but I can’t share personal opinions."),
        "mojibake": conv("Translate café.", "It is cafÃ© in the original."),
    }
    for reason, row in bad.items():
        assert [h.reason for h in check(row)][:1] == [reason], (reason, check(row))
    good = [
        conv("Classify the review as positive or negative: I loved it.", "positive"),
        conv("Convert to upper case: the cat sat on the mat", "THE CAT SAT ON THE MAT"),
        conv("List the steps.", "1. Add the flour. 2. Add the sugar. 3. Add the eggs. 4. Mix."),
        conv("Translate to French: coffee", "café"),
        conv(
            "Pick the key sentence.\n\nBees are busy. Bees make honey from nectar all day.",
            "Bees make honey from nectar all day.",
        ),
    ]
    for row in good:
        assert check(row) == [], (row, check(row))


def test_language_filter_uses_py3langid():
    cfg = CurateConfig().filters.model_copy(update={"languages": ["en"]})
    check = QualityFilter(cfg).check
    french = conv("Écris une phrase sur la mer.", "La mer est calme ce matin et le ciel est bleu.")
    english = conv("Write a sentence about the sea.", "The sea is calm this morning.")
    assert [h.reason for h in check(french)] == ["wrong_language"]
    assert check(english) == []
    assert check(conv("Hi", "Salut")) == []  # too short to tell: kept


def test_mixing_weights_and_caps():
    import random

    items = list(range(10))
    assert len(mix_source(items, 2.0, None, random.Random(0))) == 20
    capped = mix_source(items, 2.0, 15, random.Random(0))
    assert len(capped) == 15 and all(capped.count(i) in (1, 2) for i in items)
    assert len(mix_source(items, 0.5, 3, random.Random(0))) == 3


def test_num_proc_gives_the_same_output():
    s = near_dup_set(edit_counts=(1, 2), bases=40, seed=3)
    rows = [conv(t, f"answer {i}", f"p:line {i + 1}") for i, t in enumerate(s.texts * 30)]
    cfg = CurateConfig.model_validate(
        {"exact_dedup": {"scope": "user"}, "near_dedup": {"enabled": True}, "num_proc": 1}
    )
    one = curate([rows], cfg)
    two = curate([rows], cfg.model_copy(update={"num_proc": 2}))
    assert [r.to_dict() for r in one.removed] == [r.to_dict() for r in two.removed]
    assert one.stats == two.stats


def test_the_arrow_batch_path_matches_the_in_process_path():
    """The MinHash steps as `datasets` batch functions (the path for Ray Data / Spark)."""
    from instill.data.curate.distributed import near_duplicates_arrow

    s = near_dup_set(edit_counts=(1, 2), bases=40, seed=1)
    params = MinHashParams()
    local = near_duplicates(s.texts, list(range(len(s.texts))), params, num_proc=1)
    arrow = near_duplicates_arrow(s.texts, params, num_proc=2)
    assert arrow == local and len(local) > 40


def test_decontamination_needs_prompts():
    cfg = CurateConfig.model_validate({"decontaminate": {"enabled": True}})
    with pytest.raises(InstillError, match="no eval prompts were passed"):
        curate([[conv("q", "a")]], cfg)
    with pytest.raises(InstillError, match="no eval prompt to decontaminate against"):
        curate([[conv("q", "a")]], cfg, eval_prompts=[])


# --------------------------------------------------------------------------- prepare / train


def test_prepare_removes_exact_duplicates_by_default_and_reports_them(tmp_path, write_jsonl):
    from instill.data.prepare import prepare
    from instill.models.tokenizer_loading import load_tokenizer_for

    row = {"instruction": "Say hi", "output": "hi"}
    path = write_jsonl("d.jsonl", [row, {"instruction": "Say bye", "output": "bye"}, row])
    config = validate_config(base_config([{"path": str(path)}], tmp_path))
    result = prepare(config, load_tokenizer_for(config), progress=False)
    assert result.stats["rows_kept"] == 2
    assert result.stats["rejected_by_reason"] == {"exact_duplicate": 1}
    assert result.stats["curation"]["removed_by_step"]["exact_dedup"] == 1
    rejected = [
        json.loads(x) for x in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()
    ]
    assert rejected[0]["location"] == f"{path}:line 3"
    assert f"{path}:line 1" in rejected[0]["message"]
    report = tmp_path / "out" / "curation"
    assert (report / "removed.jsonl").read_text().count("\n") == 1
    assert "exact dedup" in (report / "report.md").read_text()
    # With exact dedup off, the duplicate is trained on.
    config = validate_config(
        base_config([{"path": str(path)}], tmp_path, curate={"exact_dedup": {"enabled": False}})
    )
    assert prepare(config, load_tokenizer_for(config), progress=False).stats["rows_kept"] == 3


def test_prepare_with_decontamination_needs_the_callers_prompts(tmp_path, write_jsonl):
    from instill.data.prepare import prepare
    from instill.models.tokenizer_loading import load_tokenizer_for

    path = write_jsonl("d.jsonl", [{"instruction": "Say hi", "output": "hi"}])
    config = validate_config(
        base_config([{"path": str(path)}], tmp_path, curate={"decontaminate": {"enabled": True}})
    )
    with pytest.raises(InstillError, match="no eval prompts were passed"):
        prepare(config, load_tokenizer_for(config), progress=False)


def test_source_caps_apply_after_curation_and_weight(tmp_path, write_jsonl):
    from instill.data.prepare import prepare
    from instill.models.tokenizer_loading import load_tokenizer_for

    a = write_jsonl("a.jsonl", [{"instruction": f"a{i}", "output": "x"} for i in range(10)])
    sources = [{"path": str(a), "weight": 3.0, "max_examples": 25}]
    config = validate_config(base_config(sources, tmp_path, packing=False))
    result = prepare(config, load_tokenizer_for(config), progress=False)
    assert len(result.examples) == 25
    mixture = json.loads((tmp_path / "out" / "curation" / "report.json").read_text())["mixture"]
    assert mixture == [
        {
            "source": str(a),
            "rows": 10,
            "weight": 3.0,
            "max_examples": 25,
            "capped": True,
            "examples": 25,
            "share": 1.0,
        }
    ]


def test_builtin_training_split_is_clean_against_its_eval_splits(tmp_path, capsys, monkeypatch):
    """`make demo`'s config: no training row holds an eval prompt (the splits are disjoint).

    `instill curate configs/quickstart.yaml` (a README command) prints and reports the verdict.
    """
    from instill.eval.prompts import eval_prompts_for

    monkeypatch.chdir(ROOT)
    config = load_config("configs/quickstart.yaml")
    dc = config.data.curate.decontaminate
    assert dc.enabled and dc.builtin_suite and not config.data.curate.near_dedup.enabled
    tasks = {p.task for p in eval_prompts_for(config)}
    assert tasks == {
        "builtin-heldout-families",
        "builtin-heldout-phrasings",
        "builtin-format",
        "builtin-heldout-if",
    }
    assert main(["curate", "configs/quickstart.yaml", f"output_dir={tmp_path}"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "no training row contains an eval prompt (at least 50% of its n-grams): 0 removed" in out
    report = json.loads((tmp_path / "curation" / "report.json").read_text())
    assert report["removed_by_step"]["decontaminate"] == 0
    stats = report["decontaminate"]
    from instill.data.builtin.source import read_builtin

    # every training row of the config's source is checked
    assert stats["rows_checked"] == len(list(read_builtin(config.data.sources[0].path)))
    assert stats["prompts"] > 200
    assert stats["max_score_kept"] is None or stats["max_score_kept"] < 0.5
    assert "0 removed" in (tmp_path / "curation" / "report.md").read_text()


# --------------------------------------------------------------------------- CLI and reports


@pytest.fixture
def in_repo(monkeypatch):
    """Run from the repository root, as the README's commands do."""
    monkeypatch.chdir(ROOT)


def test_cli_curate_end_to_end_and_twice_gives_identical_output(tmp_path, capsys, in_repo):
    """`instill curate configs/curate.yaml` (the README's command), twice."""
    assert main(["curate", "configs/curate.yaml", f"output_dir={tmp_path / 'one'}"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "instill curate" in out and "25 rows read, 25 valid" in out
    assert "decontamination: 17 rows checked against 45 eval prompts" in out
    report = tmp_path / "one" / "curation"
    files = ["curated.jsonl", "removed.jsonl", "report.json", "report.md", "report.html"]
    assert all((report / f).is_file() for f in files)
    removed = [json.loads(x) for x in (report / "removed.jsonl").read_text().splitlines()]
    steps = {r["step"] for r in removed}
    assert steps == {"exact_dedup", "near_dedup", "filters", "decontaminate"}
    assert all(":line " in r["location"] for r in removed)
    assert {r["reason"] for r in removed if r["step"] == "filters"} == {
        "refusal",
        "echoes_instruction",
        "repetitive_response",
        "mojibake",
    }
    curated = [json.loads(x) for x in (report / "curated.jsonl").read_text().splitlines()]
    assert len(curated) == 9 + 12  # chat: 9 kept; alpaca: 7 kept x weight 2, capped at 12
    assert all("messages" in r and ":line " in r["source"] for r in curated)
    html = (report / "report.html").read_text()
    assert html.count("<svg") == 3  # one funnel per source and the total
    md = (report / "report.md").read_text()
    assert "| chat | 17 | 17 | 16 | 14 | 10 | 9 | 9 |" in md
    # Twice (and from another output dir): byte-identical files.
    two = f"output_dir={tmp_path / 'two'}"
    assert main(["curate", "configs/curate.yaml", two, "data.curate.num_proc=2"]) == 0
    for f in files:
        assert (report / f).read_bytes() == (tmp_path / "two" / "curation" / f).read_bytes(), f


def test_curated_rows_train_as_they_are(tmp_path, in_repo):
    """curated.jsonl reads back as messages rows (and nothing more is removed from it)."""
    from instill.data.prepare import read_conversations

    assert main(["curate", "configs/curate.yaml", f"output_dir={tmp_path / 'c'}"]) == 0
    curated = tmp_path / "c" / "curation" / "curated.jsonl"
    unique = tmp_path / "unique.jsonl"
    lines = curated.read_text().splitlines()
    unique.write_text("\n".join(dict.fromkeys(lines)) + "\n")
    config = validate_config(base_config([{"path": str(unique)}], tmp_path))
    read = read_conversations(config.data)
    assert read.sources[0].rows_valid == 16
    assert len(curate(read.per_source, config.data.curate).removed) == 0


def test_cli_curate_skipped_rows_are_listed_at_the_valid_step(tmp_path, capsys):
    path = _jsonl(tmp_path / "d.jsonl", [_chat("Q one here", "A"), {"instruction": "Q"}])
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(base_config([{"path": str(path)}], tmp_path, on_bad_row="skip")))
    assert main(["curate", str(cfg)]) == 0
    removed = [
        json.loads(x)
        for x in (tmp_path / "out" / "curation" / "removed.jsonl").read_text().splitlines()
    ]
    assert [(r["location"], r["step"]) for r in removed] == [(f"{path}:line 2", "valid")]
    report = json.loads((tmp_path / "out" / "curation" / "report.json").read_text())
    assert report["removed_by_step"]["valid"] == 1
    assert report["funnel"]["total"]["read"] == 2 and report["funnel"]["total"]["valid"] == 1


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "data.curate.near_dedup.treshold=0.5",
            "unknown key data.curate.near_dedup.treshold: did you mean "
            "data.curate.near_dedup.threshold?",
        ),
        (
            "data.curate.near_dedup.threshold=1.5",
            "data.curate.near_dedup.threshold: input should be less than or equal to 1",
        ),
        (
            "data.curate.decontaminate.ngram=5",
            "data.curate.decontaminate.ngram: input should be greater than or equal to 8",
        ),
        (
            "data.curate.near_dedup.bands=64",
            "bands x rows_per_band = 64 x 4 = 256 exceeds num_perm=128",
        ),
        (
            "data.curate.filters.max_response_tokens=0",
            "data.curate.filters.max_response_tokens: input should be greater than or equal to 1",
        ),
        ("data.curate.filters.languages=[english]", "languages must be ISO 639-1 codes"),
        ("data.curate.keep=best", "data.curate.keep: input should be 'quality', "),
        ("data.sources.0.max_examples=0", "data.sources.0.max_examples: input should be greater"),
    ],
)
def test_config_errors_name_the_key(tmp_path, capsys, in_repo, override, expected):
    assert main(["curate", "configs/curate.yaml", f"output_dir={tmp_path}", override]) == 2
    assert expected in " ".join(capsys.readouterr().err.split())


def test_decontamination_without_eval_tasks_is_an_actionable_error(tmp_path, capsys, write_jsonl):
    path = write_jsonl("d.jsonl", [{"instruction": "Q", "output": "A"}])
    cfg = tmp_path / "c.yaml"
    raw = base_config([{"path": str(path)}], tmp_path, curate={"decontaminate": {"enabled": True}})
    cfg.write_text(yaml.safe_dump(raw))
    assert main(["curate", str(cfg)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "no eval prompt to decontaminate against: name eval tasks" in err


def test_extra_prompt_files_txt_and_jsonl(tmp_path):
    from instill.eval.prompts import eval_prompts_for

    txt = tmp_path / "held.txt"
    txt.write_text("Explain the rules of chess to a child in five sentences.\n\n")
    jsonl = _jsonl(tmp_path / "held.jsonl", [{"prompt": "Name a prime number above 100."}])
    raw = base_config(
        [{"path": str(txt)}],
        tmp_path,
        curate={"decontaminate": {"enabled": True, "files": [str(txt), str(jsonl)]}},
    )
    prompts = eval_prompts_for(validate_config(raw))
    assert [(p.task, p.text) for p in prompts] == [
        ("held", "Explain the rules of chess to a child in five sentences."),
        ("held", "Name a prime number above 100."),
    ]


def test_shipped_curate_config_validates():
    config = load_config(ROOT / "configs" / "curate.yaml")
    cur = config.data.curate
    assert cur.near_dedup.enabled and cur.filters.enabled and cur.decontaminate.enabled
    with pytest.raises(ConfigError):
        load_config(ROOT / "configs" / "curate.yaml", ["data.curate.bogus=1"])


def test_prepare_runs_the_same_steps(tmp_path, capsys, in_repo):
    """`instill prepare configs/curate.yaml` (the README's command): curation inside prepare."""
    out = tmp_path / "p"
    args = ["prepare", "configs/curate.yaml", "model.path=tiny-random-gemma", f"output_dir={out}"]
    assert main(args) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "curation removed exact dedup 1, near dedup 3, filters 4, decontaminate 1" in text
    stats = json.loads((out / "stats.json").read_text())
    assert stats["rows_kept"] == 16 and stats["examples"] == 9 + 12
    assert (out / "curation" / "report.html").is_file()
    readme = (ROOT / "README.md").read_text()
    for command in ("instill curate configs/curate.yaml", "instill prepare configs/curate.yaml"):
        assert command in readme
