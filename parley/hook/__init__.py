"""``parley hook``: the Claude Code ``UserPromptSubmit`` hook (contracts/mcp.md §6, §8.4; ADR-0016).

``state`` (the per-session state file), ``render`` (pure block rendering) and
``run`` (one invocation) each do one job.
"""
