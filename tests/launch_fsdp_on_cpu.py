"""`instill.cli` with accelerate's FSDP switched on for CPU processes (test helper, not a test).

torch's FSDP2 (`fully_shard`) trains on CPU over gloo, but accelerate 1.15 turns FSDP on only
for accelerator devices: with `distributed_type: FSDP` and CPU processes it silently runs
MULTI_CPU (plain DDP), so the sharded code paths of the loop would never run. This launcher, run
by `accelerate launch --config_file <fsdp config>`, sets the distributed type to FSDP after
accelerate has built its state from the FSDP plugin, so that `prepare` shards the model with
`fully_shard` and `save_state` / `load_state` / `get_state_dict` take their FSDP2 branches.
It patches accelerate's internals (`AcceleratorState.__init__`, `PartialState._shared_state`):
the test checks that the checkpoint it wrote is really an FSDP one, so a change of those
internals fails the test instead of passing it on DDP.

    accelerate launch --config_file fsdp.yaml tests/launch_fsdp_on_cpu.py train cfg.yaml
"""

from __future__ import annotations

import sys

from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType

_init = AcceleratorState.__init__


def _init_with_fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs):
    _init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = fsdp_plugin
        # Every later `AcceleratorState()` copies the partial state's type back over its own.
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP


AcceleratorState.__init__ = _init_with_fsdp_on_cpu

if __name__ == "__main__":
    from instill.cli import main

    sys.exit(main(sys.argv[1:]))
