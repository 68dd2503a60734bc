"""The main job: ``locust -f locustfile.py --headless -u 20 -r 20 -t 30s``.

Thin on purpose: everything lives in :mod:`loadgen.locust_users` (users, options, load shapes,
orchestration hooks) and, for ``--pipeline postgres-cdc``, :mod:`loadgen.locust_postgres` (its
user, and the choice of the pipeline's user class). ``import locust`` comes first so gevent
patches the standard library before boto3 loads.
"""

import locust  # noqa: I001 - must be first: gevent monkey-patching before boto3 and ssl

from loadgen import locust_postgres
from loadgen.locust_postgres import PostgresUser
from loadgen.locust_users import ProducerUser, XrhShape, register

register(locust.events)
locust_postgres.register(locust.events)  # after register: it picks the pipeline's user class

__all__ = ["PostgresUser", "ProducerUser", "XrhShape"]
