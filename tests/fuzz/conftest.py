"""Property-based fuzzing of every parser that reads outside input (Hypothesis).

Each property feeds a parser hostile input (random bytes, JSON trees, strings) and checks
that it answers with a value or one of the project's own errors (LoracleError
subclasses), in bounded time, and that parse -> format -> parse is stable where the
project writes the format back.

Profiles (pick with HYPOTHESIS_PROFILE):

- ``ci`` (default): a fixed, modest number of examples, derandomized so every run tries
  the same inputs; no example database is written. The whole fuzz suite stays well under
  a minute on two cores.
- ``long``: a local campaign with many more random examples per property, for example::

      HYPOTHESIS_PROFILE=long python -m pytest tests/fuzz -q
      HYPOTHESIS_PROFILE=long HYPOTHESIS_MAX_EXAMPLES=20000 python -m pytest tests/fuzz -q -k headers

  Failures found there are saved (shrunk) in ~/.cache/loracle-hypothesis, outside the
  repository, so a rerun replays them first. Turn each real one into a plain regression
  test next to the parser's own tests.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

settings.register_profile(
    "ci",
    max_examples=50,
    derandomize=True,
    database=None,
    deadline=1000,  # ms per example; generous for a loaded 2-core CI machine
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "5000")),
    derandomize=False,
    database=DirectoryBasedExampleDatabase(Path.home() / ".cache" / "loracle-hypothesis"),
    deadline=2000,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
