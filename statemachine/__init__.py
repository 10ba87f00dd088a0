"""Pure order core: ORDER_CHANGE models and parser, the order record, the state machine and timing policy.

No I/O, no asyncio, no Faust/Kafka/HTTP/AWS imports and no wall clock: time is always an argument.
``tests/unit/test_purity.py`` enforces this.
"""
