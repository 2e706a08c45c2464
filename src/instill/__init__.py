"""instill: instruction tuning for causal language models.

The pipeline reads instruction data in any common shape, harmonises it into one `Conversation`
schema, renders it with one chat template into `input_ids` + `labels` (assistant tokens only),
packs it, trains on it and measures whether the tuning helped.
"""

from instill.data.conversation import Conversation, Message

__all__ = ["Conversation", "Message", "__version__"]
__version__ = "0.1.0"
