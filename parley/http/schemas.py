"""The OpenAPI component schemas of ``/openapi.json`` (the shapes the routes' docs refer to).

Data only: :mod:`parley.http.route_docs` points at these with :func:`ref`,
and :mod:`parley.http.openapi` renders them under ``components.schemas``.
"""

from __future__ import annotations

from typing import Any

from ..errors import STATUS_BY_CODE
from .route_docs import ref

_STR = {"type": "string"}
_INT = {"type": "integer"}
_CURSOR = {"type": "integer", "minimum": 0}
_MESSAGE_TYPES = ["finding", "claim", "status", "question", "answer", "note", "steer"]

SCHEMAS: dict[str, Any] = {
    "ErrorEnvelope": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "enum": sorted(STATUS_BY_CODE)},
                    "message": _STR,
                    "issues": {
                        "type": "array",
                        "items": _STR,
                        "description": "Every validation problem (only on `invalid_message`).",
                    },
                },
            }
        },
    },
    "Ok": {"type": "object", "required": ["ok"], "properties": {"ok": {"const": True}}},
    "Cursor": {"type": "object", "required": ["cursor"], "properties": {"cursor": _CURSOR}},
    "CreateChannel": {
        "type": "object",
        "required": ["channel"],
        "properties": {
            "channel": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,63}$"},
            "purpose": {"type": "string", "maxLength": 1024},
            "verbosity": {
                "description": "Stored as given, NOT validated (any JSON value); conventionally quiet, normal or "
                               "chatty; default quiet.",
                "examples": ["quiet", "normal", "chatty"],
            },
            "renderBudgetChars": {"type": "integer", "minimum": 1, "maximum": 8000},
            "created_by": {"type": "string", "description": "ignored: the token's owner is used"},
        },
    },
    "ChannelDescriptor": {
        "type": "object",
        "required": ["channel", "kind", "verbosity", "renderBudgetChars", "created_by", "created_ts", "head"],
        "properties": {
            "channel": _STR,
            "kind": {"const": "ephemeral"},
            "purpose": _STR,
            "verbosity": {"description": "As given at creation (not validated, any JSON value); default quiet."},
            "renderBudgetChars": _INT,
            "created_by": _STR,
            "created_ts": {"type": "string", "description": "opaque stamp `<ISO>#<12-digit seq>`"},
            "head": _CURSOR,
            "archived": {"type": "boolean"},
        },
    },
    "ChannelList": {
        "type": "object",
        "required": ["channels"],
        "properties": {"channels": {"type": "array", "items": ref("ChannelDescriptor")}},
    },
    "Message": {
        "type": "object",
        "description": "A schema-v1 message. `agent_id`/`owner` are overwritten from the token; `v` and `ts` "
                       "are stamped by the server. Unknown keys are rejected.",
        "required": ["type", "msg_id", "body"],
        "additionalProperties": False,
        "properties": {
            "v": {"const": 1},
            "type": {"type": "string", "enum": _MESSAGE_TYPES},
            "agent_id": _STR,
            "owner": _STR,
            "msg_id": {"type": "string", "pattern": "^[0-9A-HJKMNP-TV-Z]{26}$"},
            "body": {"type": "string", "minLength": 1, "maxLength": 16000},
            "thread": {"type": "string", "pattern": "^[0-9A-HJKMNP-TV-Z]{26}$"},
            "reply_to": {"type": "string", "pattern": "^[0-9A-HJKMNP-TV-Z]{26}$"},
            "to": {"type": "array", "items": _STR, "minItems": 1, "maxItems": 32},
            "status": {"type": "string", "enum": ["needs-response", "resolved", "fyi"]},
            "artifact": _STR,
            "target": {"type": "string", "description": "claim only"},
            "lease_ttl": {"type": "integer", "minimum": 1, "description": "claim only (seconds)"},
            "heartbeat": {"type": "boolean", "description": "claim only"},
            "ts": _STR,
            "assignee": {**ref("Identity"), "description": "stored reassign claims only"},
        },
    },
    "ClaimMessage": {
        "allOf": [ref("Message")],
        "required": ["type", "msg_id", "body", "target"],
        "properties": {"type": {"const": "claim"}},
    },
    "ReassignRequest": {
        "allOf": [ref("ClaimMessage")],
        "required": ["assignee"],
        "properties": {"assignee": ref("Identity")},
    },
    "AppendResult": {
        "type": "object",
        "required": ["message", "cursor"],
        "properties": {"message": ref("Message"), "cursor": _CURSOR},
    },
    "ReadRequest": {
        "type": "object",
        "required": ["cursor"],
        "properties": {
            "cursor": {**_CURSOR, "description": "in [0, head], else 400 `invalid_cursor`"},
            "limit": {"type": "integer", "minimum": 1},
        },
    },
    "ReadPage": {
        "type": "object",
        "required": ["messages", "cursor"],
        "properties": {"messages": {"type": "array", "items": ref("Message")}, "cursor": _CURSOR},
    },
    "Holder": {
        "type": "object",
        "required": ["agent_id", "owner", "ts", "msg_id"],
        "properties": {"agent_id": _STR, "owner": _STR, "ts": _STR, "msg_id": _STR},
    },
    "ClaimOutcome": {
        "type": "object",
        "required": ["outcome"],
        "properties": {
            "outcome": {"type": "string", "enum": ["granted", "already_claimed", "not_held"]},
            "message": ref("Message"),
            "cursor": _CURSOR,
            "by": ref("Holder"),
        },
    },
    "ClaimList": {
        "type": "object",
        "required": ["claims"],
        "properties": {
            "claims": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["target", "holder", "ts", "msg_id"],
                    "properties": {
                        "target": _STR,
                        "holder": ref("Identity"),
                        "ts": _STR,
                        "msg_id": _STR,
                        "expires_at": _STR,
                    },
                },
            }
        },
    },
    "ArtifactRef": {
        "type": "object",
        "required": ["uri", "sha256", "size"],
        "properties": {
            "uri": {"type": "string", "description": "caucus://artifact/<channel>/<sha256>"},
            "sha256": _STR,
            "size": _INT,
        },
    },
    "TailFrame": {
        "type": "object",
        "required": ["cursor", "message"],
        "properties": {"cursor": _CURSOR, "message": ref("Message")},
    },
    "Identity": {
        "type": "object",
        "required": ["agent_id", "owner"],
        "properties": {"agent_id": {"type": "string", "minLength": 1}, "owner": {"type": "string", "minLength": 1}},
    },
    "Token": {
        "type": "object",
        "required": ["token", "agent_id", "owner"],
        "properties": {"token": _STR, "agent_id": _STR, "owner": _STR},
    },
    "RevokeRequest": {
        "type": "object",
        "description": "`digest` (full 64-hex sha256 of the token) wins over `agent_id`; one of them, non-empty, "
                       "is required (`revoke requires an agent_id or digest`).",
        "properties": {"agent_id": _STR, "digest": _STR},
        "anyOf": [
            {"required": ["agent_id"], "properties": {"agent_id": {"minLength": 1}}},
            {"required": ["digest"], "properties": {"digest": {"minLength": 1}}},
        ],
    },
    "RotateRequest": {
        "type": "object",
        "required": ["agent_id", "owner"],
        "properties": {
            "agent_id": {"type": "string", "minLength": 1},
            "owner": {"type": "string", "minLength": 1},
            "digest": _STR,
        },
    },
    "Revoked": {"type": "object", "required": ["revoked"], "properties": {"revoked": {"type": "boolean"}}},
    "Action": {
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "properties": {
            "subscribe": {
                "type": "object",
                "required": ["channel"],
                "properties": {
                    "channel": _STR,
                    "from": {"oneOf": [{"enum": ["head", "start"]}, _CURSOR]},
                },
            },
            "unsubscribe": {"type": "object", "required": ["channel"], "properties": {"channel": _STR}},
            "append": {
                "type": "object",
                "required": ["channel", "message"],
                "properties": {"channel": _STR, "message": ref("Message")},
            },
            "claim": {
                "type": "object",
                "required": ["channel", "message"],
                "properties": {"channel": _STR, "message": ref("ClaimMessage")},
            },
            "reassign": {
                "type": "object",
                "required": ["channel", "message", "assignee"],
                "properties": {"channel": _STR, "message": ref("ClaimMessage"), "assignee": ref("Identity")},
            },
            "done": {
                "type": "object",
                "required": ["channel", "message"],
                "properties": {"channel": _STR, "message": ref("ClaimMessage")},
            },
        },
    },
    "TurnInput": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "actions": {"type": "array", "items": ref("Action"), "maxItems": 100},
            "wait": {"type": "integer", "minimum": 0, "maximum": 60},
            "max": {"type": "integer", "minimum": 1, "maximum": 500},
            "continuationToken": _STR,
        },
    },
    "StartInput": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "actions": {"type": "array", "items": ref("Action"), "maxItems": 100},
            "wait": {"type": "integer", "minimum": 0, "maximum": 60},
            "max": {"type": "integer", "minimum": 1, "maximum": 500},
            "handler": {"type": "string", "default": "inbox"},
        },
    },
    "Delivered": {
        "type": "object",
        "required": ["channel", "cursor", "message"],
        "properties": {"channel": _STR, "cursor": _CURSOR, "message": ref("Message")},
    },
    "TurnResponse": {
        "type": "object",
        "required": ["sessionId", "status", "continuationToken"],
        "properties": {
            "sessionId": _STR,
            "status": {"type": "string", "enum": ["finished", "parked", "contended"]},
            "continuationToken": _STR,
            "output": {
                "type": "object",
                "properties": {
                    "results": {"type": "array", "items": {"type": "object"}},
                    "messages": {"type": "array", "items": ref("Delivered")},
                    "cursors": {"type": "object", "additionalProperties": _CURSOR},
                },
            },
            "wait": {
                "type": "object",
                "properties": {
                    "channels": {"type": "array", "items": _STR},
                    "cursors": {"type": "object", "additionalProperties": _CURSOR},
                },
            },
            "current": {"type": "integer", "description": "contended only"},
        },
    },
    "TurnRecord": {
        "type": "object",
        "required": ["stream", "seq", "type", "data"],
        "properties": {"stream": _STR, "seq": _INT, "type": _STR, "data": {"type": "object"}},
    },
    "TurnError": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {"code": _STR, "message": _STR},
    },
    "SessionList": {
        "type": "object",
        "required": ["agent_id", "owner", "sessions"],
        "properties": {
            "agent_id": {"type": "string"},
            "owner": {"type": "string"},
            "sessions": {"type": "array", "items": ref("SessionDescription")},
        },
    },
    "SessionDescription": {
        "type": "object",
        "required": ["sessionId", "agent_id", "owner", "handler", "turns", "subscriptions", "status"],
        "properties": {
            "sessionId": _STR,
            "agent_id": _STR,
            "owner": _STR,
            "handler": _STR,
            "turns": _INT,
            "subscriptions": {"type": "object", "additionalProperties": _CURSOR},
            "status": {"type": "string", "enum": ["idle", "in_turn"]},
            "created_ts": _STR,
            "updated_ts": _STR,
        },
    },
    "CloseRequest": {"type": "object", "properties": {"continuationToken": _STR}},
    "Closed": {"type": "object", "required": ["closed"], "properties": {"closed": {"const": True}}},
    "WsTurnFrame": {
        "allOf": [ref("StartInput")],
        "properties": {"sessionId": _STR, "continuationToken": _STR, "idempotencyKey": _STR},
    },
    "WsServerFrame": {
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"type": "string", "enum": ["record", "delta", "error", "outcome"]},
            "record": {"type": "object"},
            "delta": ref("Delivered"),
            "code": _STR,
            "message": _STR,
        },
    },
}


