"""Webhook intake: verify, parse, decide, enqueue. Never imports `kubernetes` and never runs git.

`app` is the HTTP receiver, `signature` authenticates, `bitbucket*`/`jenkins` are pure parsers from
(headers, body) to a `schemas.event.Decision`, and `intake` acts on a decision (exactly once).
"""
