"""Model and tokenizer loading: Hugging Face dirs, hub ids, GGUF files and tiny random models."""
