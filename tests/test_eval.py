"""Evaluation on tiny models: generation, task files, scoring kinds, compare and the report."""

import json
from pathlib import Path

import pytest
import torch

from instill.cli import main
from instill.data.conversation import Message
from instill.errors import InstillError, RowError
from instill.eval.runner import bootstrap_delta, compare, evaluate, write_report
from instill.eval.tasks import EvalItem, EvalTask, load_task_file, register_task
from instill.generate.engine import Generator, SamplingConfig
from instill.models.bundle import load_bundle


@pytest.fixture(scope="module")
def tiny_lm():
    return load_bundle("tiny-random-qwen", name="tiny", dtype=torch.float32)


def test_batched_generation_equals_one_by_one(tiny_lm):
    gen = Generator(tiny_lm.model, tiny_lm.renderer, tiny_lm.stop_ids)
    convs = [[Message("user", "Count " * k)] for k in range(1, 8)]
    alone = [gen.generate([c], SamplingConfig(max_new_tokens=10, batch_size=1))[0] for c in convs]
    # All at once, and 3 rows at a time (finished rows hand their place to the next prompt).
    for batch_size in (7, 3):
        batched = gen.generate(convs, SamplingConfig(max_new_tokens=10, batch_size=batch_size))
        assert [b.token_ids for b in batched] == [a.token_ids for a in alone]
        assert [b.text for b in batched] == [a.text for a in alone]
    assert all(len(b.token_ids) <= 10 for b in batched)


def test_the_lm_head_gets_contiguous_inputs_while_generating(tiny_lm):
    # torch's CPU bf16 linear on a non-contiguous slice with a frozen weight is ~100x slower.
    seen = []
    head = tiny_lm.model.get_output_embeddings()
    spy = head.register_forward_hook(lambda m, args, out: seen.append(args[0].is_contiguous()))
    try:
        gen = Generator(tiny_lm.model, tiny_lm.renderer, tiny_lm.stop_ids)
        gen.generate([[Message("user", "Hi")], [Message("user", "Hello there")]])
    finally:
        spy.remove()
    assert seen and all(seen)
    assert not head._forward_pre_hooks  # the hook is gone after generation


def test_generation_reports_each_finished_answer(tiny_lm):
    gen = Generator(tiny_lm.model, tiny_lm.renderer, tiny_lm.stop_ids)
    convs = [[Message("user", "Count " * k)] for k in range(1, 8)]
    sizes = []
    gen.generate(convs, SamplingConfig(max_new_tokens=2, batch_size=3), on_batch=sizes.append)
    assert sizes == [1] * 7


def test_evaluate_progress_bar_counts_every_prompt(tiny_lm, capsys):
    task = EvalTask(
        name="bar",
        items=[
            EvalItem(id=str(i), messages=[Message("user", f"Say {i}")], reference=str(i))
            for i in range(5)
        ],
        metric="exact_match",
    )
    records = evaluate(tiny_lm, [task], SamplingConfig(max_new_tokens=2, batch_size=2), bar=True)
    assert len(records) == 5
    assert "5/5" in capsys.readouterr().out


def test_sampling_is_seeded(tiny_lm):
    gen = Generator(tiny_lm.model, tiny_lm.renderer, tiny_lm.stop_ids)
    convs = [[Message("user", "Hi")], [Message("user", "Hello there")]]
    cfg = SamplingConfig(max_new_tokens=8, do_sample=True, temperature=1.5, seed=3)
    first = gen.generate(convs, cfg)
    again = gen.generate(convs, cfg)
    assert [g.token_ids for g in first] == [g.token_ids for g in again]


def test_stop_at_end_of_turn_is_recorded(tiny_lm):
    gen = Generator(tiny_lm.model, tiny_lm.renderer, tiny_lm.stop_ids)
    greedy = gen.generate([[Message("user", "Hi")]], SamplingConfig(max_new_tokens=6))[0]
    # Make the model's first greedy token a stop token: the answer must stop right there.
    gen = Generator(tiny_lm.model, tiny_lm.renderer, [greedy.token_ids[0]])
    stopped = gen.generate([[Message("user", "Hi")]], SamplingConfig(max_new_tokens=6))[0]
    assert stopped.stopped and stopped.token_ids == [greedy.token_ids[0]] and stopped.text == ""


def write_rows(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_task_files_accept_every_prompt_shape(tmp_path):
    path = write_rows(
        tmp_path / "t.jsonl",
        [
            {"prompt": "2+2?", "reference": "4"},
            {"instruction": "Reverse", "input": "ab", "output": "ba"},
            {
                "messages": [
                    {"role": "system", "content": "S"},
                    {"role": "user", "content": "Q"},
                    {"role": "assistant", "content": "A"},
                ]
            },
            {"conversations": [{"from": "human", "value": "Q"}], "reference": "A", "family": "f"},
        ],
    )
    task = load_task_file(path, name="t")
    assert [i.reference for i in task.items] == ["4", "ba", "A", "A"]
    assert task.items[1].messages == (Message("user", "Reverse", context="ab"),)
    assert [m.role for m in task.items[2].messages] == ["system", "user"]
    assert task.family_of(task.items[3]) == "f" and task.family_of(task.items[0]) == "t"


@pytest.mark.parametrize(
    ("row", "kind", "metric", "message"),
    [
        ({"prompt": "Q"}, "generate", "exact_match", "needs a reference answer"),
        (
            {
                "messages": [
                    {"role": "user", "content": "Q"},
                    {"role": "assistant", "content": "A"},
                    {"role": "assistant", "content": "B"},
                ]
            },
            "generate",
            "exact_match",
            "the prompt must end with a user turn",
        ),
        (
            {"prompt": "Q", "choices": ["a"], "reference": "a"},
            "loglik_choice",
            "exact_match",
            "needs `choices`: a list of at least 2 strings",
        ),
        (
            {"prompt": "Q", "choices": ["a", "b"], "reference": "c"},
            "loglik_choice",
            "exact_match",
            "the reference must be one of the choices",
        ),
        ({"prompt": "Q"}, "generate", "constraints", "needs a non-empty `constraints` list"),
        ({"question": "Q"}, "generate", "exact_match", "an eval row needs `prompt`"),
    ],
)
def test_bad_task_rows_name_file_and_line(tmp_path, row, kind, metric, message):
    path = write_rows(
        tmp_path / "bad.jsonl",
        [
            {
                "prompt": "ok",
                "reference": "x",
                "choices": ["x", "y"],
                "constraints": [{"type": "no_commas"}],
            },
            row,
        ],
    )
    with pytest.raises(RowError, match=message) as info:
        load_task_file(path, kind=kind, metric=metric)
    assert info.value.location == f"{path}:line 2"


def test_bad_constraint_and_unknown_metric_are_clear_errors(tmp_path):
    path = write_rows(
        tmp_path / "c.jsonl",
        [{"prompt": "Q", "constraints": [{"type": "word_count", "relation": "at_most", "n": -3}]}],
    )
    with pytest.raises(InstillError, match=r"c.jsonl:line 1.*word_count"):
        load_task_file(path, metric="constraints")
    ok = write_rows(tmp_path / "ok.jsonl", [{"prompt": "Q", "reference": "A"}])
    with pytest.raises(InstillError, match=r"exact_mach"):
        load_task_file(ok, metric="exact_mach")


def test_task_registry_refuses_duplicates():
    register_task("unit-test-task", lambda: EvalTask("unit-test-task", []))
    with pytest.raises(ValueError, match="already registered"):
        register_task("unit-test-task", lambda: EvalTask("unit-test-task", []))
    with pytest.raises(ValueError, match="must match"):
        register_task("Bad Name", lambda: EvalTask("x", []))


def test_loglik_choice_and_perplexity_scores(tiny_lm):
    tok = tiny_lm.renderer.tokenizer
    item = EvalItem("1", (Message("user", "Pick one"),), reference="b", choices=("a", "b"))
    task = EvalTask("mc", [item], kind="loglik_choice")
    (rec,) = evaluate(tiny_lm, [task], SamplingConfig())
    prompt = tiny_lm.renderer.encode_prompt(item.messages)
    with torch.no_grad():
        lps = []
        for c in item.choices:
            cont = tok(c, add_special_tokens=False)["input_ids"]
            logits = tiny_lm.model(input_ids=torch.tensor([prompt + cont])).logits[0]
            logp = torch.log_softmax(logits[len(prompt) - 1 : -1].float(), -1)
            lps.append(float(logp.gather(1, torch.tensor(cont)[:, None]).sum()))
    assert rec.details["logprobs"] == pytest.approx(lps, rel=1e-5)
    assert rec.score == float(lps.index(max(lps)) == 1)
    ppl_task = EvalTask(
        "ppl", [EvalItem("1", (Message("user", "Q"),), reference="An answer")], kind="perplexity"
    )
    (p,) = evaluate(tiny_lm, [ppl_task], SamplingConfig())
    assert p.score < 0 and p.tokens > 0  # minus the mean token loss


def test_bootstrap_interval():
    assert bootstrap_delta([0, 0, 0, 0], [1, 1, 1, 1]) == (1.0, 1.0, 1.0)
    mean, lo, hi = bootstrap_delta([0] * 50 + [1] * 50, [1] * 100, samples=500, seed=1)
    assert mean == 0.5 and lo < 0.5 < hi and lo > 0.3 and hi < 0.7


def _train_tiny(tmp_path: Path) -> Path:
    from instill.config import validate_config
    from instill.train.loop import train

    data = write_rows(
        tmp_path / "train.jsonl",
        [{"instruction": f"Say {w}", "output": w} for w in ["yes", "no"] * 8],
    )
    raw = {
        "model": {"path": "tiny-random-qwen", "dtype": "float32"},
        "data": {"sources": [{"path": str(data)}], "max_length": 64},
        "train": {
            "method": "full",
            "max_steps": 3,
            "lr": 1e-3,
            "batch_size": 8,
            "logging": {"tensorboard": False},
        },
        "output_dir": str(tmp_path / "run"),
    }
    return train(validate_config(raw)).final_dir


def test_eval_compare_writes_table_png_and_html(tmp_path, capsys):
    final = _train_tiny(tmp_path)
    task_file = write_rows(
        tmp_path / "say.jsonl",
        [{"prompt": f"Say {w}", "reference": w, "family": "say"} for w in ["yes", "no"]]
        + [
            {
                "prompt": "Anything without commas",
                "reference": "x",
                "family": "format",
                "constraints": [{"type": "no_commas"}],
            }
        ],
    )
    out = tmp_path / "eval"
    code = main(
        [
            "eval",
            "--compare",
            "tiny-random-qwen",
            str(final),
            "--tasks",
            str(task_file),
            "--metric",
            "contains",
            "--max-new-tokens",
            "6",
            "--output-dir",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "delta" in printed and "say" in printed
    report = json.loads((out / "report.json").read_text())
    comp = report["comparison"]
    assert comp["models"] == ["tiny-random-qwen", str(final)]
    families = {r["name"]: r for r in comp["rows"] if r["level"] == "family"}
    assert set(families) == {"say", "format"}
    tuned = families["say"]["models"][str(final)]
    assert tuned["n"] == 2 and "ci95" in tuned and "delta" in tuned
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    assert "<table>" in html and "data:image/png;base64," in html
    records = (out / "records-tiny-random-qwen.jsonl").read_text().splitlines()
    assert len(records) == 3 and {"prompt", "response", "score", "stopped"} <= set(
        json.loads(records[0])
    )
    assert "| say |" in (out / "report.md").read_text()


def test_a_failed_report_leaves_the_previous_one(tmp_path, monkeypatch):
    from instill.eval import runner

    out = tmp_path / "eval"
    out.mkdir()
    (out / "report.json").write_text("previous")
    comp = compare([], ["m"])
    monkeypatch.setattr(runner, "chart_png", lambda *a: (_ for _ in ()).throw(OSError("disk")))
    with pytest.raises(OSError):
        write_report(out, [], comp)
    assert (out / "report.json").read_text() == "previous"


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(InstillError, match="no-such-model"):
        load_bundle(str(tmp_path / "no-such-model"))


def test_lm_eval_adapter_runs_a_local_task(tmp_path, monkeypatch):
    import yaml

    from instill.config import EvalModelConfig
    from instill.eval.lm_eval_adapter import run_lm_eval

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = write_rows(
        tmp_path / "qa.jsonl",
        [
            {"question": f"Is {k} even?", "choices": ["yes", "no"], "answer": k % 2}
            for k in range(6)
        ],
    )
    tasks_dir = tmp_path / "lm_tasks"
    tasks_dir.mkdir()
    (tasks_dir / "instill_local_even.yaml").write_text(
        yaml.safe_dump(
            {
                "task": "instill_local_even",
                "dataset_path": "json",
                "dataset_kwargs": {"data_files": {"test": str(data)}},
                "test_split": "test",
                "output_type": "multiple_choice",
                "doc_to_text": "Question: {{question}}\nAnswer:",
                "doc_to_choice": "{{choices}}",
                "doc_to_target": "{{answer}}",
                "metric_list": [{"metric": "acc"}],
            }
        )
    )
    out = run_lm_eval(
        EvalModelConfig(path="tiny-random-qwen"),
        ["instill_local_even"],
        include=str(tasks_dir),
        out_dir=tmp_path / "lm",
    )
    acc = out["results"]["results"]["instill_local_even"]["acc,none"]
    assert 0.0 <= acc <= 1.0
    assert "instill_local_even" in out["table"]
    saved = json.loads((tmp_path / "lm" / "lm_eval-tiny-random-qwen.json").read_text())
    assert "instill_local_even" in saved
    with pytest.raises(InstillError, match="unknown lm-eval task"):
        run_lm_eval(
            EvalModelConfig(path="tiny-random-qwen"), ["no_such_task_xyz"], include=str(tasks_dir)
        )


def test_train_runs_eval_tasks_every_n_steps(tmp_path):
    from instill.config import validate_config
    from instill.train.loop import train

    data = write_rows(
        tmp_path / "train.jsonl",
        [{"instruction": f"Say {w}", "output": w} for w in ["yes", "no"] * 8],
    )
    task = write_rows(tmp_path / "say.jsonl", [{"prompt": "Say yes", "reference": "yes"}])
    raw = {
        "model": {"path": "tiny-random-qwen", "dtype": "float32"},
        "data": {"sources": [{"path": str(data)}], "max_length": 64},
        "train": {
            "method": "full",
            "max_steps": 4,
            "eval_every": 2,
            "batch_size": 8,
            "eval_tasks": [{"path": str(task), "metric": "contains"}],
            "eval_max_new_tokens": 4,
            "logging": {"tensorboard": False},
        },
        "output_dir": str(tmp_path / "run"),
    }
    result = train(validate_config(raw))
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "eval/say/score" in x] == [2, 4, 4]
    assert all(0.0 <= x["eval/say/score"] <= 1.0 for x in lines if "eval/say/score" in x)
    assert len(result.eval_scores) == 3
