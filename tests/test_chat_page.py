"""The chat page at `/` in a real headless Chromium: type a message, read both streamed answers
(the base and a LoRA adapter side by side), each equal to its offline greedy answer."""

from __future__ import annotations

import json

import pytest
import torch

from instill.config import validate_config
from instill.data.conversation import Message
from instill.generate.stream import DecodeEngine, DecodeRequest
from instill.models.bundle import load_bundle
from instill.train.loop import train
from tests.browser import Browser
from tests.serving import running_server
from tests.test_train import make_config

BASE = "tiny-random-qwen"
TEXT = "List three colors."


def _offline(path: str, tokens: int) -> str:
    bundle = load_bundle(path, dtype=torch.float32, merge_adapter=False)
    prompt = bundle.renderer.encode_prompt([Message("user", TEXT)])
    engine = DecodeEngine.for_bundle(bundle)
    return engine.run([DecodeRequest(prompt, max_new_tokens=tokens)])[0].text


@pytest.mark.slow
def test_chat_page_streams_base_and_adapter_side_by_side(tmp_path):
    final = train(
        validate_config(make_config(tmp_path, method="lora", max_steps=2, lr=1e-3))
    ).final_dir
    expected = [_offline(BASE, 8), _offline(str(final), 8)]
    args = [BASE, "--dtype", "float32", "--adapter", f"tuned={final}"]
    with running_server(args, tmp_path / "server.log") as url:
        browser = Browser(tmp_path / "profile")
        try:
            browser.open(url + "/")
            names = browser.wait_for(
                "document.querySelectorAll('.pane').length === 2 && "
                "Array.from(document.querySelectorAll('.pane select')).map(s => s.value)"
            )
            assert names == [BASE, "tuned"]
            browser.evaluate("document.getElementById('max_tokens').value = '8'")
            browser.evaluate("document.getElementById('input').focus()")
            browser.type_text(TEXT)
            browser.press_enter()
            answers = browser.wait_for(
                "(() => { const a = Array.from(document.querySelectorAll('.msg.assistant'));"
                " return a.length === 2 && a.every(e => e.dataset.done)"
                " && JSON.stringify(a.map(e => e.textContent)); })()"
            )
            users = browser.evaluate(
                "Array.from(document.querySelectorAll('.msg.user')).map(e => e.textContent)"
            )
        finally:
            browser.close()
    assert users == [TEXT, TEXT]
    assert json.loads(answers) == expected
    assert expected[0] != expected[1]
