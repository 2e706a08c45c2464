"""Metric sinks: `metrics.jsonl` always, TensorBoard by default, W&B / MLflow when configured.

Each sink is a small object with `log(step, metrics)`, `log_text(step, tag, text)` and `close()`
(the `MetricSink` protocol); the loop talks to one `MetricLogger` that fans out to all of them.
Only the main process logs.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Protocol

from instill.config import LoggingConfig
from instill.errors import InstillError


class MetricSink(Protocol):
    def log(self, step: int, metrics: dict[str, float]) -> None: ...

    def log_text(self, step: int, tag: str, text: str) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """One JSON object per line: `{"step": 3, "time": ..., "train/loss": ...}`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = path.open("a", encoding="utf-8")

    def log(self, step: int, metrics: dict[str, float]) -> None:
        clean = {
            k: (v if not isinstance(v, float) or math.isfinite(v) else str(v))
            for k, v in metrics.items()
        }
        self._f.write(json.dumps({"step": step, "time": round(time.time(), 3), **clean}) + "\n")
        self._f.flush()

    def log_text(self, step: int, tag: str, text: str) -> None:
        self._f.write(json.dumps({"step": step, "time": round(time.time(), 3), tag: text}) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class TensorBoardSink:
    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise InstillError(
                "train.logging.tensorboard is on but the tensorboard package is missing: "
                "pip install tensorboard (or set train.logging.tensorboard=false)"
            ) from e
        self._w = SummaryWriter(log_dir=str(log_dir))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            self._w.add_scalar(k, v, step)

    def log_text(self, step: int, tag: str, text: str) -> None:
        self._w.add_text(tag, text, step)

    def close(self) -> None:
        self._w.close()


class WandbSink:
    def __init__(self, cfg: LoggingConfig, run_config: dict, run_dir: Path) -> None:
        try:
            import wandb
        except ImportError as e:
            raise InstillError("train.logging.wandb is on: pip install wandb") from e
        self._wandb = wandb
        self._run = wandb.init(
            project=cfg.project, name=cfg.run_name, config=run_config, dir=str(run_dir)
        )

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self._run.log(metrics, step=step)

    def log_text(self, step: int, tag: str, text: str) -> None:
        self._run.log({tag: self._wandb.Html(f"<pre>{text}</pre>")}, step=step)

    def close(self) -> None:
        self._run.finish()


class MlflowSink:
    def __init__(self, cfg: LoggingConfig, run_config: dict) -> None:
        try:
            import mlflow
        except ImportError as e:
            raise InstillError("train.logging.mlflow is on: pip install mlflow") from e
        self._mlflow = mlflow
        mlflow.set_experiment(cfg.project)
        mlflow.start_run(run_name=cfg.run_name)
        mlflow.log_params({k: str(v)[:250] for k, v in _flatten(run_config).items()})

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self._mlflow.log_metrics({k.replace("/", "_"): v for k, v in metrics.items()}, step=step)

    def log_text(self, step: int, tag: str, text: str) -> None:
        self._mlflow.log_text(text, f"{tag.replace('/', '_')}_step{step}.txt")

    def close(self) -> None:
        self._mlflow.end_run()


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


class MetricLogger:
    """Fans metrics out to every configured sink."""

    def __init__(self, run_dir: Path, cfg: LoggingConfig, run_config: dict) -> None:
        self.sinks: list[MetricSink] = [JsonlSink(run_dir / "metrics.jsonl")]
        if cfg.tensorboard:
            self.sinks.append(TensorBoardSink(run_dir / "tensorboard"))
        if cfg.wandb:
            self.sinks.append(WandbSink(cfg, run_config, run_dir))
        if cfg.mlflow:
            self.sinks.append(MlflowSink(cfg, run_config))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for s in self.sinks:
            s.log(step, metrics)

    def log_text(self, step: int, tag: str, text: str) -> None:
        for s in self.sinks:
            s.log_text(step, tag, text)

    def close(self) -> None:
        for s in self.sinks:
            s.close()


class NullLogger:
    """What non-main processes log to."""

    def log(self, step: int, metrics: dict[str, float]) -> None:
        pass

    def log_text(self, step: int, tag: str, text: str) -> None:
        pass

    def close(self) -> None:
        pass
