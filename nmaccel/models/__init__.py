"""Real-weight models: safetensors / GGUF loaders (loaders), numpy Llama and BERT forward passes."""
