"""The crash detector's rules (CONTRACT §5–§9), pure: no Kafka, Faust or clock.

``NodeEngine`` applies liveness and session events of one media node, and event-time progress
(a watermark), to state held behind the small :class:`~services.core.rules.ports.RulesStore`
port; it returns the records to write. The Faust adapter and the unit tests' in-memory fake
implement the port.
"""

from services.core.rules.engine import NodeEngine, RuleSettings
from services.core.rules.outputs import Emit, Output, Reject
from services.core.rules.ports import InMemoryRulesStore, NodeLoad, RulesStore
from services.core.rules.state import Incident, Input, NodeState, SessionState

__all__ = [
    "Emit",
    "InMemoryRulesStore",
    "Incident",
    "Input",
    "NodeEngine",
    "NodeLoad",
    "NodeState",
    "Output",
    "Reject",
    "RuleSettings",
    "RulesStore",
    "SessionState",
]
