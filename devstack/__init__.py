"""The lab: everything that runs the service locally and tests it, kept apart from the product.

* :mod:`devstack.sandbox`: the SP-API + LWA sandbox (``solicit sandbox``), enforcing Amazon's rules.
* :mod:`devstack.local_kafka`: a real Kafka broker from Maven jars (``solicit kafka up|down|status``).
* :mod:`devstack.demo`: the whole pipeline on a local stack with demo traffic (``solicit demo``).
* :mod:`devstack.spapi_models`: Amazon's official API models, vendored (Apache-2.0).

The product (``statemachine``, ``connectors``, ``streams``) never imports this package
(``tests/test_layout.py``); the lab's commands join the ``solicit`` command line through the ``solicit.commands``
entry points in ``pyproject.toml``.
"""
