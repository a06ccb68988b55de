"""Checks every contract's fields share: text a database column can hold, numbers within their
type and meaning, names from an alphabet. Each raises `Violation` naming the field."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

__all__ = [
    "INT32_MAX", "INT64_MAX", "MAX_REQUEST_ID_LENGTH", "Violation", "check_finite", "check_name", "check_range",
    "check_request_id", "check_text", "check_texts",
]

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
# Idempotency keys (`request_id`) of every create method.
MAX_REQUEST_ID_LENGTH = 64


class Violation(ValueError):
    """A field breaks its contract: `field` names it as the request spells it (`jobs[3].label`),
    `description` says what is wrong and what is accepted."""

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}" if field else description)
        self.field = field
        self.description = description


def check_text(value: str, field: str, *, max_length: int, required: bool = False, what: str = "") -> str:
    """Text a column of `max_length` characters holds: no NUL (PostgreSQL text cannot hold it,
    and C strings end at it), not longer than the column; non-empty when required."""
    name = what or field
    if required and not value:
        raise Violation(field, f"{name} is required")
    if len(value) > max_length:
        raise Violation(field, f"{name} is {len(value)} characters long; at most {max_length}")
    if "\x00" in value:
        raise Violation(field, f"{name} contains a NUL character")
    return value


def check_texts(values: Iterable[str], field: str, *, max_length: int, max_count: int, what: str = "") -> None:
    """Every element of a repeated text field (`field[i]`), and at most `max_count` of them."""
    count = 0
    for index, value in enumerate(values):
        check_text(value, f"{field}[{index}]", max_length=max_length, what=what)
        count += 1
    if count > max_count:
        raise Violation(field, f"{what or field} has {count} elements; at most {max_count}")


def check_name(value: str, field: str, pattern: re.Pattern[str], description: str) -> str:
    """A name that must match `pattern` (anchored); `description` says what one looks like."""
    if not pattern.fullmatch(value):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise Violation(field, f"{shown!r} is not {description}")
    return value


def check_range(value: int, field: str, *, minimum: int = 0, maximum: int = INT64_MAX, what: str = "") -> int:
    if not minimum <= value <= maximum:
        raise Violation(field, f"{what or field} must be between {minimum} and {maximum}, not {value}")
    return value


def check_finite(value: float, field: str, *, minimum: float = 0.0, maximum: float = math.inf,
                 positive: bool = False, what: str = "") -> float:
    """A real number that is a number (not NaN, not infinite) within [minimum, maximum] (and
    above zero when `positive`)."""
    name = what or field
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Violation(field, f"{name} must be a finite number, not {value}")
    if positive and value <= 0:
        raise Violation(field, f"{name} must be positive, not {_shown(value)}")
    if not minimum <= value <= maximum:
        raise Violation(field, f"{name} must be between {_shown(minimum)} and {_shown(maximum)}, not {_shown(value)}")
    return value


def _shown(number: float) -> str:
    """Whole numbers in full (with thousands separators), others as `%g`."""
    return f"{int(number):,}" if math.isfinite(number) and number == int(number) else f"{number:g}"


def check_request_id(value: str, field: str = "request_id") -> str:
    """An idempotency key: at most MAX_REQUEST_ID_LENGTH characters, no NUL; empty for none."""
    return check_text(value, field, max_length=MAX_REQUEST_ID_LENGTH)
