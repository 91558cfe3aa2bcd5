"""The LLM experiment: providers, workflows, tasks, tools, scoring, idle baselines and the
batch runner that pairs linear and agentic runs on the instrument of `alems.measure`."""
