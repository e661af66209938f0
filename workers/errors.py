"""The two kinds of failure a step can meet, as kopf and Prow tell them apart."""


class PermanentError(RuntimeError):
    """Retrying will not help (forbidden, invalid object, missing branch): the build ends in `error`."""


class TransientError(RuntimeError):
    """It may pass (5xx, 429, connection refused, network): the step is retried with backoff."""
