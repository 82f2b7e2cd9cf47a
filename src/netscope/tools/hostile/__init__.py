"""Hostile call-request messages: every shape a careless or malicious producer can write.

Why: unit fuzzing proves ``parse_request`` total on bytes; it cannot prove that the running
gateway, fed through a real broker, survives the same input with its Kafka keys and headers,
makes no call for it, dead-letters and audits each message exactly once and leaves the valid
traffic around it alone (issue 15, item 3). This package draws those messages (one module
per family of shapes, ``shapes_*.py``, mixed into valid traffic by ``stream.py``),
``kafka.py`` produces them (some need a record batch built by hand) and
``tests/integration/test_hostile_input.py`` checks what NetScope did with them.

Each :class:`Hostile` says what NetScope must do with it: ``valid=False`` means rejected
(one dead letter, one ``invalid`` audit record, no call); ``valid=True`` means a strange but
legal message, called once and audited with one of ``outcomes``. The verdict is declared by
the kind, from docs/contract.md, never computed with the validator under test
(``tests/unit/test_hostile_generator.py`` checks that the two agree). Everything is drawn
from one ``random.Random``: a seed replays a run.
"""

# Importing the shape modules registers their kinds.
from netscope.tools.hostile import shapes_kafka, shapes_payload, shapes_request  # noqa: F401
from netscope.tools.hostile.model import Hostile, HostileConfig, RawHeaderKey, kinds, make
from netscope.tools.hostile.stream import HostileStream, new_seed

__all__ = [
    "Hostile",
    "HostileConfig",
    "HostileStream",
    "RawHeaderKey",
    "kinds",
    "make",
    "new_seed",
]
