"""Worked examples (run from the repository root, e.g.
`--workflows linear,examples.plan_execute_critique:agent`; docs/AGENTS.md). A regular
package, so that no installed `examples` package can shadow it."""
