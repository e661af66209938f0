"""The two kinds of failure a step can meet, as kopf and Prow tell them apart."""


class PermanentError(RuntimeError):
    """Retrying will not help (forbidden, invalid object, missing branch): the build ends in `error`."""


class TransientError(RuntimeError):
    """It may pass (5xx, 429, connection refused, network): the step is retried with backoff."""

    retry_after: float | None = None  # seconds the server asked for (429 Retry-After)
    answered: bool = False  # see `Refused`


class Refused(TransientError):
    """The other end answered, for now no (5xx, 429): what was sent did not take effect."""

    answered = True


class PodLost(RuntimeError):
    """The build's pod was lost (evicted, deleted, its node gone): relaunch it, it did not fail."""

    def __init__(self, reason: str, node_loss: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.node_loss = node_loss


class PodGone(PermanentError):
    """An exec or log read found no pod (404 at the handshake): it was deleted, which is a pod loss."""


class NotRunning(PermanentError):
    """An exec found the container not running (400 at the handshake): not started yet, or finished."""
