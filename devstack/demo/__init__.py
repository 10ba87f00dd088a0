"""``solicit demo`` and the end-to-end tests: a whole local stack as real processes, a realistic scenario of
ORDER_CHANGE traffic for many sellers, and a monitor that follows the outcomes topic.

Needs the development extras (``pip install -e '.[dev]'``): the local SQS is a moto server.
"""
