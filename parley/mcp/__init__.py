"""parley's MCP server (contracts/mcp.md §1–§5, §8.1–§8.3).

A client of the SDK (:mod:`parley.client`), never of the actors: the same
tools run over stdio (``parley mcp``, :mod:`.server`) and over Streamable
HTTP at ``/mcp`` inside ``parley serve`` (:mod:`.http`). ADR-0014 records how
it runs next to trio; ADR-0015 how ``/mcp`` is mounted and anchored.
"""
