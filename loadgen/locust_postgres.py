"""Locust glue of the ``postgres-cdc`` pipeline: its user, and the choice of user per pipeline.

:class:`PostgresUser` is :class:`loadgen.locust_users.ProducerUser` (the same stop that never
cuts a request off, the same final ledger batch on stop, the same ledger sink: the writer in a
local run, the forwarder to the master on a worker) with a producer of transactions
(:func:`loadgen.postgres_load.postgres_producer`) paced at ``--rate-per-user`` transactions per
second. Each transaction is one Locust request: ``request_type`` ``postgres``, name ``txn`` (it
ran to its COMMIT; a failure if it did not commit or its COMMIT got no answer) or ``txn rolled
back`` (rolled back on purpose), ``response_time`` from its BEGIN to its outcome, and
``response_length`` the number of statements it ran (not bytes).

Which user runs: the master or local runner keeps :class:`PostgresUser` for ``--pipeline
postgres-cdc`` and :class:`~loadgen.locust_users.ProducerUser` for the others (Locust would
otherwise spawn both classes of the locustfile). Workers keep both: they spawn whichever the
master names.
"""

from __future__ import annotations

from typing import Any

from locust.runners import WorkerRunner

from loadgen.locust_users import ProducerUser

REQUEST_TYPE = "postgres"


class PostgresUser(ProducerUser):
    """A producer of PostgreSQL transactions (``--pipeline postgres-cdc``)."""

    def on_start(self) -> None:
        node = getattr(self.environment, "xrh", None)
        if node is None or node.context is None:
            from locust.exception import StopUser

            raise StopUser("the run is not set up (see the errors above)")
        from gevent.event import Event

        from loadgen.postgres_load import postgres_producer
        from loadgen.producers import ProducerLoop

        producer, pacer = postgres_producer(node.context, self._report)
        self._loop = ProducerLoop(producer, pacer, Event())

    def _report(self, name: str, ms: float, statements: int, exc: BaseException | None) -> None:
        self.environment.events.request.fire(
            request_type=REQUEST_TYPE, name=name, response_time=ms, response_length=statements,
            exception=exc, context={},
        )  # fmt: skip


def register(events: Any) -> None:
    """Hook into Locust's events (called once by locustfile.py, after
    :func:`loadgen.locust_users.register`, whose init listener sets the node up)."""
    events.init.add_listener(_pick_user_class)


def _pick_user_class(environment: Any, **_: Any) -> None:
    node = getattr(environment, "xrh", None)
    if node is None or isinstance(environment.runner, WorkerRunner):
        return
    postgres = node.options.pipeline == "postgres-cdc"
    environment.user_classes[:] = [
        cls for cls in environment.user_classes if (cls is PostgresUser) == postgres
    ]
