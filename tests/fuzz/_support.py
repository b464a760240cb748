"""What every fuzz property shares: the one kind of error a parser may answer with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import strategies as st

from engine.errors import LoracleError

T = TypeVar("T")


def own_errors_only(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | LoracleError:
    """Call `fn`; its own LoracleError comes back as the value, anything else propagates
    (and fails the property with the input that caused it)."""
    try:
        return fn(*args, **kwargs)
    except LoracleError as exc:
        # The message must render in both languages: it is what the user is shown.
        assert str(exc)
        assert exc.localized("zh-TW")
        return exc


# JSON values of every kind, nested a few levels: what a stranger's file or an API sends.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
