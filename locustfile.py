"""The main job: ``locust -f locustfile.py --headless -u 20 -r 20 -t 30s``.

Thin on purpose: everything lives in :mod:`loadgen.locust_users` (users, options, load shapes,
orchestration hooks). ``import locust`` comes first so gevent patches the standard library
before boto3 loads.
"""

import locust  # noqa: I001 - must be first: gevent monkey-patching before boto3 and ssl

from loadgen.locust_users import ProducerUser, XrhShape, register

register(locust.events)

__all__ = ["ProducerUser", "XrhShape"]
