"""Models as the pipeline sees them: loading (local path or hub), chat formatting, generation, and the tiny
random-weight Qwen3.
"""
