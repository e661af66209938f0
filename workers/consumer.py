"""The worker's Celery consumer, with one repair: a lost Redis connection must end in a reconnect.

When the broker connection breaks, Celery's connection-loss handler first `collect()`s the
connection, which detaches its transport (`transport.client = None`), then `close()`s it. Whatever
touches one of that connection's channels afterwards needs a new Redis client, whose address the
channel reads from the detached transport: `AttributeError: 'NoneType' object has no attribute
'hostname'` (kombu 5.7, plain Redis and sentinels alike). Two things do, whenever a step was running
(`task_acks_late`: its message unacknowledged):

- the close itself, when the consumer was waiting on the queue (BRPOP): closing the channel a second
  time restores its unacknowledged messages;
- the running step's acknowledgement, sent on its message's (old) channel once the step ends.

Neither is a connection error, so nothing caught them: the worker stopped with "Unrecoverable error"
instead of reconnecting, and `podci worker` ended with status 0 (see `podci.cli.run_celery`). Found
by `python -m bench.faults sentinel`; `tests/test_sentinel.py` kills Redis under a running step.

Here the close's failure is logged, and the transport gets the closed connection back (it still
holds the broker's address and options), so a late acknowledgement reaches Redis through a new
client, or fails as a connection error, which Celery logs and survives. Messages the close did not
restore stay in Redis' unacked index: another worker restores them after the visibility timeout,
and the reconciler re-sends an overdue step long before (every message is fenced by `seq`).
"""

from __future__ import annotations

import logging

from celery.worker.consumer import Consumer

log = logging.getLogger("podci.consumer")


class ReconnectingConsumer(Consumer):  # type: ignore[misc]
    def on_connection_error_after_connected(self, exc: BaseException) -> None:
        lost = self.connection
        transport = getattr(lost, "_transport", None)  # not `.transport`: that would make a new one
        try:
            super().on_connection_error_after_connected(exc)
        except AttributeError as error:
            log.warning("closing the lost broker connection failed (%r); reconnecting", error)
            # What Celery's handler still does after the close: buffered writes of the old connection.
            if self.pool is not None and self.pool.flush:
                self.pool.flush()
        finally:
            if transport is not None and transport.client is None:
                transport.client = lost
