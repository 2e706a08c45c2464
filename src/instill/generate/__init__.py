"""Generation with the training renderer: batched, KV-cached, stopping at the end-of-turn token."""
