"""A function run through `torch.compile` where that works, eagerly where it does not.

The fused LM-head softmax (loss.py) and the CPU attention's kernels (cpu_attention.py) are
plain torch functions whose compiled form is one fused kernel (inductor's C++ on CPU, Triton on
CUDA). `CompiledOrEager` compiles at first use (`dynamic=True`: one kernel for every shape);
where compiling fails (no C++ compiler, say) it says so once and runs the same function
eagerly (correct, not faster); its switch variable set to "0" skips the attempt.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import torch


class CompiledOrEager:
    """`fn` compiled at first call; eager when `env` is "0" or compiling fails (`failed`)."""

    def __init__(
        self,
        fn: Callable,
        what: str,
        env: str,
        logger: logging.Logger,
        fallback: str = "computing it eagerly (slower, same result)",
    ) -> None:
        self.fn, self.what, self.env, self.logger, self.fallback = fn, what, env, logger, fallback
        self._fn: Callable | None = None
        self.failed = False

    def __call__(self, *args):
        if self._fn is None:
            off = os.environ.get(self.env, "1") == "0"
            self._fn = self.fn if off else torch.compile(self.fn, dynamic=True)
        if self._fn is self.fn:
            return self.fn(*args)
        try:
            return self._fn(*args)
        except Exception as err:  # any compiler failure: the same arithmetic, eagerly
            self.failed = True
            self.logger.warning(
                "compiling %s failed (%s: %s); %s. Set %s=0 to skip the attempt.",
                self.what,
                type(err).__name__,
                str(err).splitlines()[0] if str(err) else "",
                self.fallback,
                self.env,
            )
            self._fn = self.fn
            return self.fn(*args)
