"""The default caps, once (contracts/channels.md §3 D6: they equal Caucus's).

``config.Settings`` and its environment table, the domain's
:class:`~parley.domain.channel.Limits`, the seatbelt and the MCP server's
upload check all take their defaults from here, so a default changes in one
place. Each is a default only: operators set their own through
``PARLEY_*`` variables or ``parley serve`` flags.
"""

from __future__ import annotations

from typing import Final

MAX_POSTS_PER_MINUTE: Final = 30
#: The per-agent budget across all channels is this many times the per-channel one.
GLOBAL_RATE_MULTIPLIER: Final = 4
MAX_CHANNEL_CREATES_PER_MINUTE: Final = 10
MAX_MESSAGES_PER_CHANNEL: Final = 10_000
MAX_CHANNELS: Final = 1_000
MAX_READ_LIMIT: Final = 500
MAX_ARTIFACT_BYTES: Final = 1_048_576
MAX_CHANNEL_ARTIFACT_BYTES: Final = 16_777_216
MAX_TOTAL_ARTIFACT_BYTES: Final = 134_217_728
