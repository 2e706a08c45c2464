"""The built-in suite: size, disjoint splits, exports, registered tasks, quickstart end to end."""

import json
from collections import Counter
from pathlib import Path

import pytest

from instill.data.builtin.augment import pair_split
from instill.data.builtin.core import MIN_PHRASINGS, families
from instill.data.builtin.families_c import HELD_OUT_LONGFORM
from instill.data.builtin.suite import (
    EVAL_SPLITS,
    HELD_OUT_FAMILIES,
    HELD_OUT_PHRASINGS,
    answer_budget,
    build_suite,
    eval_row,
    export_suite,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def suite():
    return build_suite(seed=0, train_per_family=12, eval_per_family=4)


def test_at_least_40_families_with_6_phrasings_each():
    fams = families()
    assert len(fams) >= 40
    assert all(len(f.phrasings) >= MIN_PHRASINGS for f in fams.values())
    categories = Counter(f.category for f in fams.values())
    for needed in (
        "classification",
        "extraction",
        "transformation",
        "arithmetic",
        "counting",
        "qa",
        "constrained",
        "summary",
        "cipher",
        "code",
        "multi_turn",
    ):
        assert categories[needed] >= 1, needed


def test_suite_mixes_context_system_and_multi_turn(suite):
    rows = suite.rows["train"] + [r for s in EVAL_SPLITS for r in suite.rows[s]]
    assert any(r["context"] for r in rows)
    assert any(r["messages"][0]["role"] == "system" for r in rows)
    assert any(sum(m["role"] == "assistant" for m in r["messages"]) > 1 for r in rows)


def test_splits_are_disjoint_by_construction(suite):
    fams = families()
    assert len(HELD_OUT_FAMILIES) >= 10
    train = suite.rows["train"]
    trained_families = {r["family"] for r in train}
    assert not trained_families & set(HELD_OUT_FAMILIES)
    assert {r["family"] for r in suite.rows["heldout_families"]} == set(HELD_OUT_FAMILIES)
    for r in train:  # training never uses a family's last phrasings
        assert r["phrasing"] < len(fams[r["family"]].phrasings) - HELD_OUT_PHRASINGS
    for split in ("heldout_phrasings", "format"):
        for r in suite.rows[split]:
            assert r["family"] in trained_families
            assert r["phrasing"] >= len(fams[r["family"]].phrasings) - HELD_OUT_PHRASINGS
            # and its instruction text never occurs in training for that family
            assert r["instruction"] not in {
                t["instruction"] for t in train if t["family"] == r["family"]
            }
    train_prompts = {json.dumps(r["messages"][:-1]) for r in train}
    for split in EVAL_SPLITS:
        assert not {json.dumps(r["messages"][:-1]) for r in suite.rows[split]} & train_prompts
    assert all(r["category"] == "constrained" for r in suite.rows["format"])
    # Format compliance is scored by the constraint checkers, JSON answers by JSON matching.
    metrics = Counter(r["check"]["metric"] for r in suite.rows["format"])
    assert set(metrics) == {"constraints", "json_match"} and metrics["constraints"] > 10


def test_heldout_if_split_is_long_form_with_untrained_phrasings_and_combinations(suite):
    fams = families()
    train, rows = suite.rows["train"], suite.rows["heldout_if"]
    trained = {r["family"] for r in train}
    assert not trained & set(HELD_OUT_LONGFORM)
    assert {r["family"] for r in rows} == {n for n, f in fams.items() if f.category == "longform"}
    assert all(sum(r["family"] == n for r in rows) == 4 for n in HELD_OUT_LONGFORM)
    for r in rows:
        if r["family"] in trained:  # trained long-form families: held-out phrasings only
            assert r["phrasing"] >= len(fams[r["family"]].phrasings) - HELD_OUT_PHRASINGS
        # every pair of added constraint types is one training never combines
        kinds = r["augmented"]
        assert all(pair_split(a, b) == "eval" for i, a in enumerate(kinds) for b in kinds[i + 1 :])
    assert sum(bool(r["augmented"]) for r in rows) >= 0.8 * len(rows)
    # training combines constraints too, never in an eval pair
    trained_kinds = [r["augmented"] for r in train if len(r["augmented"]) > 1]
    assert trained_kinds
    for kinds in trained_kinds:
        assert all(pair_split(a, b) == "train" for i, a in enumerate(kinds) for b in kinds[i + 1 :])
    share = sum(bool(r["augmented"]) for r in train) / len(train)
    assert 0.3 <= share <= 0.5


def test_long_answers_get_token_budgets_from_their_length(suite):
    long_rows = [
        r for r in suite.rows["heldout_if"] if len(r["messages"][-1]["content"].split()) >= 40
    ]
    assert long_rows
    for r in long_rows:
        budget = eval_row(r)["max_new_tokens"]
        assert budget >= 2.2 * len(r["messages"][-1]["content"].split()) + 48
        assert budget % 32 == 0
    assert answer_budget("A short answer.") is None
    assert "max_new_tokens" not in eval_row(suite.rows["heldout_families"][0])
    no_aug = build_suite(seed=0, train_per_family=12, eval_per_family=4, augment_share=0.0)
    assert not any(r["augmented"] for r in no_aug.rows["train"])
    with pytest.raises(ValueError, match="augment_share"):
        build_suite(augment_share=1.5)


def test_longform_rows_and_augmentation_are_set_apart_from_the_rest(suite):
    from instill.data.builtin.source import read_builtin, suite_kwargs
    from instill.errors import InstillError

    more = build_suite(
        seed=0,
        train_per_family=12,
        eval_per_family=4,
        longform_per_family=30,
        longform_augment_share=1.0,
    )
    old = suite.rows["train"]
    new = more.rows["train"]
    longform = {r["family"] for r in old if r["category"] == "longform"}
    assert longform and len(longform) < len({r["family"] for r in old})
    for fam in {r["family"] for r in old}:
        mine = [r for r in new if r["family"] == fam]
        before = [r for r in old if r["family"] == fam]
        if fam in longform:
            assert len(mine) == 30
            # the same seeded stream of instances: passages and contexts come in the same order
            assert [r["context"] for r in mine[:12]] == [r["context"] for r in before]
        else:
            assert mine == before  # other families untouched, augmentation included
    augmented = sum(bool(r["augmented"]) for r in new if r["family"] in longform)
    assert augmented >= 0.95 * 30 * len(longform)
    # the eval splits do not move (only collisions with training prompts could)
    assert more.rows["heldout_if"] == suite.rows["heldout_if"]

    spec = "builtin:train?per_family=2&longform_per_family=5&longform_augment=0"
    rows = list(read_builtin(spec))
    assert len(rows) == 2 * (
        len(families()) - len(HELD_OUT_FAMILIES) - len(HELD_OUT_LONGFORM)
    ) + 3 * len(longform)
    assert (
        suite_kwargs(spec, {"longform_per_family": "5", "longform_augment": "0"})[
            "longform_augment_share"
        ]
        == 0.0
    )
    with pytest.raises(InstillError, match="longform_augment must be a share between 0 and 1"):
        suite_kwargs("builtin:train", {"longform_augment": "2"})
    with pytest.raises(InstillError, match="longform_per_family must be 0 or more"):
        suite_kwargs("builtin:train", {"longform_per_family": "-1"})
    with pytest.raises(InstillError, match="and longform_per_family must be integers"):
        suite_kwargs("builtin:train", {"longform_per_family": "many"})
    with pytest.raises(ValueError, match="longform_augment_share"):
        build_suite(longform_augment_share=-0.1)


def test_suite_is_deterministic(suite):
    again = build_suite(seed=0, train_per_family=12, eval_per_family=4)
    assert again.rows == suite.rows
    other = build_suite(seed=1, train_per_family=12, eval_per_family=4)
    assert other.rows["train"] != suite.rows["train"]


def test_every_reference_answer_passes_its_own_checker(suite):
    from instill.eval.builtin_tasks import suite_tasks
    from instill.eval.runner import score_answer

    for task in suite_tasks(suite):
        for item, row in zip(task.items, suite.rows[task.name], strict=True):
            value, _ = score_answer(task, item, row["messages"][-1]["content"])
            assert value == 1.0, row["id"]


@pytest.mark.parametrize("fmt", ["alpaca", "sharegpt", "messages", "prompt_completion"])
def test_export_in_each_format_reads_back(suite, tmp_path, fmt):
    from instill.config import validate_config
    from instill.data.prepare import read_conversations

    report = export_suite(suite, tmp_path, fmt)
    multi = sum(
        1 for r in suite.rows["train"] if sum(m["role"] == "assistant" for m in r["messages"]) > 1
    )
    if fmt == "alpaca":
        assert report["train"]["skipped"] == {"multi_turn_not_representable": multi}
    else:
        assert report["train"]["skipped"] == {}
    assert report["train"]["written"] + sum(report["train"]["skipped"].values()) == len(
        suite.rows["train"]
    )
    raw = {
        "model": {"path": "tiny-random-gemma"},
        "data": {"sources": [{"path": str(tmp_path / "train.jsonl")}]},
    }
    read = read_conversations(validate_config(raw).data)
    assert len(read.conversations) == report["train"]["written"]
    assert (tmp_path / "format.eval.jsonl").is_file()


def test_registered_builtin_tasks_and_builtin_source(tmp_path):
    from instill.config import validate_config
    from instill.data.prepare import prepare
    from instill.eval.tasks import get_task, registered_task_names
    from instill.models.tokenizer_loading import load_tokenizer_for

    names = registered_task_names()
    for split in ("heldout-families", "heldout-phrasings", "format"):
        assert f"builtin-{split}" in names
    task = get_task("builtin-format")
    assert task.items and sum(i.metric == "constraints" for i in task.items) > 10
    raw = {
        "model": {"path": "tiny-random-gemma"},
        "data": {"sources": [{"path": "builtin:train?per_family=2"}], "max_length": 1024},
        "output_dir": str(tmp_path / "out"),
    }
    config = validate_config(raw)
    result = prepare(config, load_tokenizer_for(config), progress=False)
    held_out = len(HELD_OUT_FAMILIES) + len(HELD_OUT_LONGFORM)
    assert result.stats["rows_read"] == 2 * (len(families()) - held_out)
    assert result.stats["rows_rejected"] == 0


def test_source_registry_serves_builtin_and_refuses_bad_registrations(monkeypatch):
    from instill.data import sources
    from instill.data.sources import RawRow, read_source, register_source
    from instill.errors import InstillError

    monkeypatch.setattr(sources, "_SOURCES", dict(sources._SOURCES))  # registrations stay here
    assert "builtin" in sources.registered_source_names()
    ((file, rows),) = read_source("builtin:format?eval_per_family=1")
    first = next(rows)
    assert file is None and first.location == "builtin:format?eval_per_family=1[row 0]"
    with pytest.raises(InstillError, match="unknown built-in split 'nope'"):
        next(next(read_source("builtin:nope"))[1])
    with pytest.raises(InstillError, match="unknown parameter"):
        next(next(read_source("builtin:train?sed=1"))[1])

    def reader(spec):
        yield RawRow({"messages": []}, f"{spec}[row 0]")

    register_source("unit_test", reader)
    ((_, rows),) = read_source("unit_test:anything")
    assert [r.location for r in rows] == ["unit_test:anything[row 0]"]
    with pytest.raises(InstillError, match="'builtin' is already registered"):
        register_source("builtin", reader)
    for bad in ("Bad", "x", "has-dash", "", "1abc"):
        with pytest.raises(InstillError, match="must match"):
            register_source(bad, reader)
    with pytest.raises(InstillError, match="must be callable"):
        register_source("not_callable", "reader")
    with pytest.raises(InstillError, match=r"unknown data source 'nosuch'.*builtin, unit_test"):
        next(read_source("nosuch:train"))


def test_quickstart_runs_end_to_end_on_a_tiny_model(tmp_path, capsys):
    from instill.cli import main

    code = main(
        [
            "quickstart",
            "configs/quickstart.yaml",
            "model.path=tiny-random-gemma",
            "data.sources.0.path=builtin:train?per_family=2",
            "train.max_steps=2",
            "train.epochs=1",
            "quickstart.eval_per_family=1",
            "quickstart.max_long_new_tokens=8",
            "eval.max_new_tokens=4",
            "train.logging.tensorboard=false",
            f"output_dir={tmp_path / 'qs'}",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "base vs tuned per split" in out and "heldout_families" in out
    # before the base evaluation: what the run computes in (and, without native bf16, why slow)
    lines = out.splitlines()
    first_eval = next(i for i, x in enumerate(lines) if x.startswith("[1/3] evaluating"))
    assert lines[first_eval + 1].startswith(("compute: float32 on cpu", "compute: bfloat16 on cpu"))
    report = json.loads((tmp_path / "qs" / "report" / "report.json").read_text())
    comp = report["comparison"]
    assert comp["models"] == ["base", "tuned"]
    splits = {r["name"]: r for r in comp["rows"] if r["level"] == "task"}
    assert set(splits) == {"heldout_families", "heldout_phrasings", "format", "heldout_if"}
    for row in splits.values():
        for model in ("base", "tuned"):
            s = row["models"][model]
            assert s["n"] >= 1 and 0.0 <= s["score"] <= 1.0 and s["stop_rate"] is not None
    assert (tmp_path / "qs" / "report" / "chart.png").is_file()
    assert (tmp_path / "qs" / "report" / "report.html").is_file()
    assert (tmp_path / "qs" / "final" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "qs" / "suite" / "train.jsonl").is_file()
    # The quality benchmark reads these runs; its table must agree with report.json.
    import importlib.util

    spec = importlib.util.spec_from_file_location("qq", ROOT / "bench" / "quickstart_quality.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    summary = bench.summarize(tmp_path / "qs")
    fam = splits["heldout_families"]["models"]
    assert summary["splits"]["heldout_families"]["tuned"] == 100 * fam["tuned"]["score"]
    assert summary["training_rows"] == comp["training_rows"]
    assert "| heldout_phrasings |" in bench.table(summary)
    # The template is the built-in gemma one, not the tokenizer's: the turn rows were trained.
    assert "turn tokens too: <start_of_turn>, <end_of_turn>" in out
