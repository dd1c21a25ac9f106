"""The SQL projection as pure functions: CDR and node-fact records → row changes.

Every table row is the merge of contributions from records, and each column's merge is
commutative (first non-null, maximum, sum, or latest by an order key), so the rows do not depend on
how records of different partitions interleave (CONTRACT §12). The store renders the same merge
rules into SQL upserts.
"""

from services.core.projection.mapping import Contribution, contributions, utc
from services.core.projection.merge import Add, First, Latest, Max, Min, Policy, Row, TableSpec
from services.core.projection.records import ProjectedRecord, Skipped, parse_record
from services.core.projection.recovery import (
    Candidate,
    Creation,
    Join,
    Link,
    link_recoveries,
    returned_participants,
)
from services.core.projection.tables import TABLES

__all__ = [
    "TABLES",
    "Add",
    "Candidate",
    "Contribution",
    "Creation",
    "First",
    "Join",
    "Latest",
    "Link",
    "Max",
    "Min",
    "Policy",
    "ProjectedRecord",
    "Row",
    "Skipped",
    "TableSpec",
    "contributions",
    "link_recoveries",
    "parse_record",
    "returned_participants",
    "utc",
]
