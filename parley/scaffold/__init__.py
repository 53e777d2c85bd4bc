"""``parley init``: write ``.mcp.json`` and the Claude Code hook settings (contracts/mcp.md §7).

``files`` decides what each file should hold and which plan applies (pure);
``cli`` parses the flags, asks, writes and prints.
"""
