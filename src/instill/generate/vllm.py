"""`instill serve --print-vllm`: the `vllm serve` command that serves the same model the same way.

Beyond one process, vLLM serves the same files: the base model, the LoRA adapters as
`--lora-modules`, the chat template the model was trained with (written to a file from the
training template, since a base model's tokenizer may have none or a different one) and the stop
ids (template end-of-turn + EOS) as the generation config's EOS ids, so vLLM stops where
instill does.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from instill.atomic import write_atomic
from instill.data.templates import chat_template_source

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def write_chat_template(renderer, directory: str | Path) -> Path:
    """Write the training template as Jinja to `<directory>/chat_template.jinja`."""
    source = chat_template_source(renderer.template)
    return write_atomic(Path(directory) / "chat_template.jinja", source)


def vllm_command(
    model: str,
    template_file: str | Path,
    stop_ids: Sequence[int],
    adapters: Mapping[str, str] | None = None,
    max_lora_rank: int | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key_env: bool = False,
) -> str:
    """The `vllm serve` command line (shell-quoted) for `model` and its adapters."""
    args = ["vllm", "serve", model, "--host", host, "--port", str(port)]
    args += ["--chat-template", str(template_file)]
    args += ["--override-generation-config", json.dumps({"eos_token_id": list(stop_ids)})]
    if adapters:
        args += ["--enable-lora", "--lora-modules"]
        args += [f"{name}={path}" for name, path in adapters.items()]
        if max_lora_rank:
            # vLLM accepts a fixed set of ranks: the smallest that fits.
            fits = [r for r in VLLM_LORA_RANKS if r >= max_lora_rank] or [max_lora_rank]
            args += ["--max-lora-rank", str(fits[0])]
    line = " ".join(shlex.quote(a) for a in args)
    if api_key_env:
        line += ' --api-key "$INSTILL_API_KEY"'
    return line


def lora_rank(adapter_dir: str | Path) -> int | None:
    """The rank `r` of a PEFT LoRA adapter dir, if its config says."""
    cfg = Path(adapter_dir) / "adapter_config.json"
    if not cfg.is_file():
        return None
    r = json.loads(cfg.read_text()).get("r")
    return int(r) if isinstance(r, int) else None
