"""The one interface every reporter implements, as Prow's crier does.

`report(record)` posts the record's *current* state. The caller (the `podci.notify` task) remembers
in `record.reported[name]` what was last said (`says`) and never says the same twice, retries on
`TransientError` with backoff, and never lets a reporter change the build's own result.
"""

from __future__ import annotations

from typing import Protocol

from schemas.record import BuildRecord


class Reporter(Protocol):
    name: str

    def applies(self, record: BuildRecord) -> bool:
        """Whether this reporter has anything to say about this build in its current state."""
        ...

    def says(self, record: BuildRecord) -> str:
        """What a post now would say (Bitbucket's state, INPROGRESS for queued and running alike):
        the reporter has something new to say only when this differs from what it last said."""
        ...

    def report(self, record: BuildRecord) -> str:
        """Post the record's current state; returns a short note for the build page.

        Raises `workers.errors.TransientError` for what may pass (5xx, 429, timeouts, connection):
        it is retried. A 4xx is logged with the response body and returned as a note (given up).
        Never logs or returns credentials.
        """
        ...

    def shows(self, record: BuildRecord) -> bool:
        """Whether the other end already shows what `report` would post now. Asked only before
        posting again after an attempt whose answer never arrived or was never recorded (a worker
        killed between the other end's 2xx and the record): a status is then not posted twice.
        False when it cannot tell."""
        ...
