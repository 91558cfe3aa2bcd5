"""A-LEMS: measure what an LLM workflow costs in energy, and the orchestration tax."""

__version__ = "0.1.0"
