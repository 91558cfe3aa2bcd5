"""The instrument: energy and performance counters sampled on one clock, usable without
any LLM. `Sampler` (C core) and `ReplaySampler` (recorded tables) both satisfy the
`SamplerProtocol` the experiment room codes against."""
