"""Many task adapters on one base: inspect them, list them, combine them.

`inspect_adapter` reads what an adapter dir says about itself (rank, targets, trained tokens, the
base it belongs to, size on disk) without loading any weights. `combine_adapters` is PEFT's
`add_weighted_adapter` plus what PEFT leaves out and users then lose silently:

* **trained token rows** (PEFT trainable tokens: the turn-token rows instill trains on base
  models) are not touched by `add_weighted_adapter`; here they are combined like the LoRA
  updates (the weighted sum of each adapter's row change, or TIES / DARE of those changes);
* adapters trained on **another base** are refused with a message naming both bases, and so are
  adapters with different tokenizers or trained tokens (rows of one are not rows of the other);
* **DoRA** adapters are refused: their magnitude vectors have no weighted combination in PEFT.

Methods: `cat` (the combined update is exactly the weighted sum of the inputs' updates; its rank
is the sum of theirs), `linear` (PEFT's: the A and B matrices are averaged separately, so the
update is only approximately the weighted sum; equal ranks needed), `ties` and `dare` (PEFT's
`ties` and `dare_linear`, with `density`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from instill.atomic import atomic_directory
from instill.errors import InstillError
from instill.models.bundle import INFO_FILE, Bundle, load_bundle, read_info

METHODS = {"linear": "linear", "cat": "cat", "ties": "ties", "dare": "dare_linear"}
ADAPTER_CONFIG = "adapter_config.json"


@dataclass
class AdapterInfo:
    """What an adapter dir says about itself."""

    path: str
    base: str | None
    method: str  # lora, qlora (instill.json) or the PEFT type
    r: int
    alpha: float
    targets: list[str] | str
    trained_tokens: dict[str, list[int]]  # module -> token ids whose rows it trains
    dora: bool
    rslora: bool
    size_bytes: int
    steps: int | None = None
    final_loss: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def inspect_adapter(path: str | Path) -> AdapterInfo:
    """Read an adapter dir's config and instill.json (no weights are loaded)."""
    d = Path(path)
    if not is_adapter_dir(d):
        raise InstillError(f"{d}: not an adapter dir (no {ADAPTER_CONFIG})")
    try:
        cfg = json.loads((d / ADAPTER_CONFIG).read_text())
    except json.JSONDecodeError as e:
        raise InstillError(f"{d / ADAPTER_CONFIG}: not valid JSON ({e})") from e
    info = read_info(d)
    targets = cfg.get("target_modules") or []
    tokens = cfg.get("trainable_token_indices") or {}
    if isinstance(tokens, list):  # PEFT's shorthand: the input embedding only
        tokens = {"embed_tokens": tokens}
    return AdapterInfo(
        path=str(d),
        base=info.get("base_model") or cfg.get("base_model_name_or_path"),
        method=info.get("method") or str(cfg.get("peft_type", "")).lower(),
        r=int(cfg.get("r", 0)),
        alpha=float(cfg.get("lora_alpha", 0)),
        targets=sorted(targets) if isinstance(targets, list) else targets,
        trained_tokens={k: sorted(v) for k, v in tokens.items()},
        dora=bool(cfg.get("use_dora")),
        rslora=bool(cfg.get("use_rslora")),
        size_bytes=sum(f.stat().st_size for f in d.rglob("*") if f.is_file()),
        steps=info.get("steps"),
        final_loss=info.get("final_loss"),
    )


def list_adapters(root: str | Path) -> list[AdapterInfo]:
    """Every adapter dir at or under `root`, sorted by path."""
    root = Path(root)
    if not root.exists():
        raise InstillError(f"{root}: no such directory")
    dirs = sorted({f.parent for f in root.rglob(ADAPTER_CONFIG)})
    if is_adapter_dir(root) and root not in dirs:
        dirs.insert(0, root)
    return [inspect_adapter(d) for d in dirs]


def check_same_base(adapters: list[AdapterInfo], base: str | None = None) -> str:
    """The one base all `adapters` belong to (or `base`); refuses a mix, naming the bases."""
    bases = {a.path: a.base for a in adapters}
    expected = base or adapters[0].base
    if expected is None:
        raise InstillError(
            f"{adapters[0].path}: the adapter does not name its base model; pass --base"
        )
    for path, b in bases.items():
        if b is not None and _norm(b) != _norm(expected):
            raise InstillError(
                f"{path} was trained on base {b!r}, not {expected!r}: adapters only combine "
                "(or share a server) on the base they were trained on"
            )
    return expected


def _norm(base: str) -> str:
    p = Path(base).expanduser()
    return str(p.resolve()) if p.exists() else base


@dataclass
class CombineReport:
    """What `combine_adapters` wrote."""

    out: str
    base: str
    method: str
    weights: list[float]
    inputs: list[str]
    r: int
    size_bytes: int
    trained_tokens: dict[str, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def combine_adapters(
    adapters: list[str | Path],
    out: str | Path,
    weights: list[float] | None = None,
    method: str = "cat",
    density: float = 0.5,
    base: str | None = None,
) -> CombineReport:
    """Combine LoRA adapters of one base into one adapter dir (`instill adapters combine`).

    Args:
        adapters: two or more adapter dirs trained on the same base.
        out: the adapter dir to write (atomically): PEFT weights and config, the tokenizer and
            template of the inputs, instill.json.
        weights: one weight per adapter (default: equal weights summing to 1).
        method: `cat`, `linear`, `ties` or `dare` (see the module docstring).
        density: share of each update kept by `ties` / `dare` (0 < density <= 1).
        base: the base model, when the adapters do not name a loadable one.
    """
    if method not in METHODS:
        raise InstillError(f"--method must be one of {', '.join(METHODS)}; got {method!r}")
    if len(adapters) < 2:
        raise InstillError("combine needs at least two adapters")
    weights = list(weights) if weights else [1.0 / len(adapters)] * len(adapters)
    if len(weights) != len(adapters):
        raise InstillError(
            f"--weights has {len(weights)} values for {len(adapters)} adapters; give one each"
        )
    if not 0.0 < density <= 1.0:
        raise InstillError(f"--density must be in (0, 1], got {density}")
    infos = [inspect_adapter(a) for a in adapters]
    base_name = check_same_base(infos, base)
    for a in infos:
        if a.dora:
            raise InstillError(
                f"{a.path} is a DoRA adapter: its magnitude vectors have no weighted "
                "combination; merge it (instill merge) or combine LoRA adapters"
            )
        if a.trained_tokens != infos[0].trained_tokens:
            raise InstillError(
                f"{a.path} trains token rows {a.trained_tokens} but {infos[0].path} trains "
                f"{infos[0].trained_tokens}: only adapters that train the same tokens combine"
            )
    if method != "cat" and len({a.r for a in infos}) > 1:
        raise InstillError(
            f"--method {method} needs adapters of equal rank (got r = "
            f"{', '.join(str(a.r) for a in infos)}); use --method cat"
        )
    _check_same_tokenizer(infos)

    bundle = load_bundle(
        base_name if base else str(adapters[0]),
        adapter=str(adapters[0]) if base else None,
        dtype=torch.float32,
        merge_adapter=False,
        device="cpu",
    )
    model = bundle.model
    names = ["default"] + [f"input{i}" for i in range(1, len(adapters))]
    for name, path in zip(names[1:], adapters[1:], strict=True):
        model.load_adapter(str(path), adapter_name=name)
    kwargs = {"density": density} if method in ("ties", "dare") else {}
    try:
        model.add_weighted_adapter(
            names, weights, "combined", combination_type=METHODS[method], **kwargs
        )
    except ValueError as e:
        raise InstillError(f"PEFT cannot combine these adapters with {method}: {e}") from e
    _combine_token_rows(model, names, weights, method, density)
    model.set_adapter("combined")
    target = _save_combined(model, bundle, out, infos, base_name, method, weights)
    return CombineReport(
        out=str(target),
        base=base_name,
        method=method,
        weights=weights,
        inputs=[str(a) for a in adapters],
        r=int(model.peft_config["combined"].r),
        size_bytes=sum(f.stat().st_size for f in Path(target).rglob("*") if f.is_file()),
        trained_tokens=infos[0].trained_tokens,
    )


def _check_same_tokenizer(infos: list[AdapterInfo]) -> None:
    def fingerprint(path: str) -> tuple:
        d = Path(path)
        tok = d / "tokenizer.json"
        cfg = d / "tokenizer_config.json"
        return (
            tok.read_bytes() if tok.is_file() else None,
            json.loads(cfg.read_text()).get("chat_template") if cfg.is_file() else None,
        )

    first = fingerprint(infos[0].path)
    for a in infos[1:]:
        if fingerprint(a.path) != first:
            raise InstillError(
                f"{a.path} was trained with another tokenizer or chat template than "
                f"{infos[0].path}: the combined adapter would prompt one of them wrongly"
            )


@torch.no_grad()
def _combine_token_rows(model, names: list[str], weights: list[float], method: str, density):
    """Give the combined adapter the combination of the inputs' trained token rows.

    PEFT stores a trained row's *value*; the update is value - original row. Combined value =
    original + combine(updates), with the same method as the LoRA updates (a weighted sum for
    `cat` and `linear`).
    """
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer
    from peft.utils import merge_utils

    for module in model.modules():
        if not isinstance(module, TrainableTokensLayer) or module.tied_adapter is not None:
            continue
        if names[0] not in module.trainable_tokens_delta:
            continue
        indices = module.token_indices[names[0]]
        original = module.trainable_tokens_original[names[0]]  # [tokens, hidden]
        updates = [module.trainable_tokens_delta[n] - original for n in names]
        w = torch.tensor(weights, dtype=original.dtype)
        if method == "ties":
            update = merge_utils.ties(updates, w, density)
        elif method == "dare":
            update = merge_utils.dare_linear(updates, w, density)
        else:
            update = merge_utils.task_arithmetic(updates, w)
        module.update_layer("combined", token_indices=list(indices))
        module.trainable_tokens_delta["combined"].data = original + update
        module.trainable_tokens_original["combined"] = original.clone()


def _save_combined(model, bundle: Bundle, out, infos, base_name, method, weights) -> Path:
    target = Path(out)
    with atomic_directory(target) as tmp:
        model.save_pretrained(str(tmp / "peft"), selected_adapters=["combined"])
        saved = tmp / "peft" / "combined"
        for f in saved.iterdir():
            shutil.move(str(f), tmp / f.name)
        shutil.rmtree(tmp / "peft")
        cfg = json.loads((tmp / ADAPTER_CONFIG).read_text())
        cfg["base_model_name_or_path"] = base_name
        (tmp / ADAPTER_CONFIG).write_text(json.dumps(cfg, indent=2))
        bundle.tokenizer.save_pretrained(str(tmp))
        first = read_info(infos[0].path)
        info = {
            "base_model": base_name,
            "method": first.get("method", "lora"),
            "base_dtype": first.get("base_dtype"),
            "template": first.get("template", bundle.renderer.template.name),
            "end_of_turn": bundle.renderer.template.end_of_turn,
            "combined_from": {
                "method": method,
                "adapters": [a.path for a in infos],
                "weights": weights,
            },
        }
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2))
    return target
