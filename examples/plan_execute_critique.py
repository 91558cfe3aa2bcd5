"""A custom arm for `alems batch` (docs/AGENTS.md): plan, execute the tool calls, draft an
answer, critique it, answer.

    alems batch --tasks gsm8k_basic --providers local -n 5 \
        --workflows linear,examples.plan_execute_critique:agent

(run from the repository root, so that `examples` imports). Every model call and tool
call below goes through `ctx`, so each is a phase with its energy; the four stages are
marked as phases of their own. Nothing here is A-LEMS-specific beyond `ctx`.
"""

from __future__ import annotations

CRITIQUE = (
    "Question:\n{question}\n\nTool results:\n{results}\n\nProposed answer:\n{draft}\n\n"
    "Check the proposed answer against the question and the tool results. If it is right, "
    "reply with exactly OK. Otherwise reply with the corrected final answer on the last "
    "line as 'Answer: <answer>'."
)


def agent(ctx) -> str:
    # 1. plan: the model names the tool calls to make (none when no tool helps)
    with ctx.phases.phase("plan", kind="planning"):
        plan = ctx.model.complete(ctx.prompt, tools=True)

    # 2. execute them; a failing call is reported to the model, not fatal
    results = []
    with ctx.phases.phase("execute", kind="execution"):
        for call in plan.tool_calls[:ctx.limits.max_tool_calls]:
            try:
                output = ctx.tools.run(call)
            except ctx.tools.Error as exc:
                output = f"error: {exc}"
            results.append(f"{call.name}({call.input}) -> {output}")
    shown = "\n".join(results) or "(no tool was called)"

    # 3. draft an answer from the tool results, 4. critique it
    with ctx.phases.phase("answer", kind="synthesis"):
        draft = ctx.model.complete(
            f"{ctx.prompt}\n\nTool results:\n{shown}\n\nGive the final answer on the last "
            "line as 'Answer: <answer>'.").text
        ctx.phases.mark("critique")
        verdict = ctx.model.complete(
            CRITIQUE.format(question=ctx.prompt, results=shown, draft=draft)).text
    return draft if verdict.strip().upper().startswith("OK") else verdict
