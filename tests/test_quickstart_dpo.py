"""`instill quickstart --dpo`: base vs tuned vs tuned+dpo in one report, on a tiny model."""

from __future__ import annotations

import json

import yaml

from instill.cli import main


def test_quickstart_dpo_stage_reports_three_models(tmp_path, capsys):
    out = tmp_path / "qs"
    code = main(
        [
            "quickstart",
            "configs/quickstart.yaml",
            "--dpo",
            "model.path=tiny-random-gemma",
            "data.sources.0.path=builtin:train?per_family=2",
            "train.max_steps=2",
            "train.epochs=1",
            "quickstart.eval_per_family=1",
            "quickstart.max_long_new_tokens=8",
            "quickstart.dpo.prompts_per_family=1",
            "quickstart.dpo.samples=2",
            "quickstart.dpo.max_new_tokens=4",
            "quickstart.dpo.max_steps=2",
            "eval.max_new_tokens=4",
            "train.logging.tensorboard=false",
            f"output_dir={out}",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "base vs tuned vs tuned+dpo per split" in printed
    assert "[5/5] evaluating the DPO-tuned model" in printed
    comp = json.loads((out / "report" / "report.json").read_text())["comparison"]
    assert comp["models"] == ["base", "tuned", "tuned+dpo"]
    splits = [r for r in comp["rows"] if r["level"] == "task"]
    for row in splits:
        dpo = row["models"]["tuned+dpo"]
        # Paired with the base on the same prompts: same n, a delta and its interval.
        assert dpo["n"] == row["models"]["base"]["n"] >= 1
        assert "delta" in dpo and len(dpo["ci95"]) == 2
    # The pairs: chosen passes its checker (the suite's reference), rejected is a sample of
    # the tuned model; none of their prompts is an evaluation prompt or an SFT row.
    pairs = [json.loads(x) for x in (out / "dpo" / "pairs.jsonl").read_text().splitlines()]
    assert pairs and comp["dpo"]["pairs"] == len(pairs)
    suite_prompts = set()
    for split in ("train", "heldout_families", "heldout_phrasings", "format", "heldout_if"):
        for line in (out / "suite" / f"{split}.jsonl").read_text().splitlines():
            suite_prompts.add(json.dumps(json.loads(line)["messages"][:-1], sort_keys=True))
    for p in pairs:
        assert json.dumps(p["prompt"], sort_keys=True) not in suite_prompts
        assert p["chosen"][0]["content"] != p["rejected"][0]["content"]
        assert p["chosen_from"] == "reference"
    # DPO trained a fresh LoRA on the merged SFT model (its reference: adapters off).
    info = json.loads((out / "dpo" / "final" / "instill.json").read_text())
    assert info["base_model"].endswith("sft-merged")
    assert (out / "dpo" / "sft-merged" / "config.json").is_file()
    # The shipped stage's objective: sigmoid DPO plus the chosen answer's NLL (sft_weight).
    dpo_train = yaml.safe_load((out / "dpo" / "config.yaml").read_text())["train"]
    assert dpo_train["objective"] == "dpo"
    assert dpo_train["dpo"]["loss"] == "sigmoid" and dpo_train["dpo"]["sft_weight"] == 1.0
    assert (out / "report" / "families.png").is_file()
    md = (out / "report" / "report.md").read_text()
    assert md.index("**all prompts**") < md.index("## Per family")


def test_dpo_prompts_come_after_each_familys_sft_rows_and_skip_eval_prompts():
    from instill.data.builtin.suite import build_suite, prompt_key
    from instill.pipelines.quickstart import dpo_prompts

    params = {
        "seed": 0,
        "train_per_family": 3,
        "augment_share": 0.4,
        "longform_per_family": 5,
        "longform_augment_share": 0.9,
    }
    suite = build_suite(eval_per_family=2, **params)
    rows = dpo_prompts(suite, params, per_family=2)
    taken = {prompt_key(r) for split in suite.rows.values() for r in split}
    assert rows and not any(prompt_key(r) in taken for r in rows)
    assert len({prompt_key(r) for r in rows}) == len(rows)
    families = {r["family"]: r["category"] for r in suite.rows["train"]}
    assert "longform" in families.values()
    for row in rows:
        index = int(row["id"].rsplit("/", 1)[1])
        sft = 5 if families[row["family"]] == "longform" else 3
        assert sft <= index < sft + 2  # the rows right after the ones SFT trained on
    per_family = {f: sum(r["family"] == f for r in rows) for f in families}
    assert sum(per_family.values()) >= 2 * len(families) - 3  # a collision may drop one
