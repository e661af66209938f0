"""Errors the receiver answers with a status code and a sentence; nothing is queued for any of them."""


class PayloadError(ValueError):
    """The body is not what the sender documents (400). The message names the field."""


class SignatureError(PermissionError):
    """Missing or wrong signature or token (401)."""
