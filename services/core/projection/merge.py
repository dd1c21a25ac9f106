"""Column merge rules: how two contributions to one row combine.

Each rule is commutative and associative, so folding contributions in any order gives the same
row. ``Latest`` is a last-writer-wins register ordered by an integer column (event time and a rank
for ties), which is how state that changes over time (a node's status) stays order-independent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Add", "First", "Latest", "Max", "Min", "Policy", "Row", "TableSpec"]

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class First:
    """The first non-null value; used where every writer agrees on the value."""


@dataclass(frozen=True, slots=True)
class Max:
    """The greatest non-null value."""


@dataclass(frozen=True, slots=True)
class Min:
    """The least non-null value."""


@dataclass(frozen=True, slots=True)
class Add:
    """A counter: contributions are summed (each record counts once; the projector dedups)."""


@dataclass(frozen=True, slots=True)
class Latest:
    """The value of the contribution with the greatest ``order`` column; ``default`` until then."""

    order: str
    default: Any = None


Policy = First | Max | Min | Add | Latest


@dataclass(frozen=True, slots=True)
class TableSpec:
    name: str
    key: tuple[str, ...]
    columns: Mapping[str, Policy] = field(default_factory=dict)

    def empty_row(self, key: tuple[Any, ...]) -> Row:
        """The row before any contribution: the key, zero counters, defaults, nulls."""
        row: Row = dict(zip(self.key, key, strict=True))
        for name, policy in self.columns.items():
            if isinstance(policy, Add):
                row[name] = 0
            elif isinstance(policy, Latest):
                row[name] = policy.default
            else:
                row[name] = None
        return row

    def merge(self, old: Row, new: Mapping[str, Any]) -> Row:
        """``old`` with the contribution ``new`` (only the columns it sets) merged in."""
        merged = dict(old)
        for name, value in new.items():
            if name in self.key:
                continue
            policy = self.columns[name]
            current = old[name]
            if isinstance(policy, First):
                merged[name] = current if current is not None else value
            elif isinstance(policy, Max | Min):
                merged[name] = _extreme(policy, current, value)
            elif isinstance(policy, Add):
                merged[name] = current + (value or 0)
            else:
                new_order, old_order = new.get(policy.order), old[policy.order]
                if new_order is not None and (old_order is None or new_order >= old_order):
                    merged[name] = value
        return merged


def _extreme(policy: Max | Min, current: Any, value: Any) -> Any:
    if current is None:
        return value
    if value is None:
        return current
    return max(current, value) if isinstance(policy, Max) else min(current, value)
