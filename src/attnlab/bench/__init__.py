"""Benchmarks: `python -m attnlab.bench {attention,vit,gpt}`.

Each prints a ratio against a reference measured side by side in the same
process, so the figure means something on whatever machine runs it.
"""
