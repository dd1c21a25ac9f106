"""The SQL projection store: SQLAlchemy 2 models (the one source of table definitions)."""

from services.store.engine import make_engine
from services.store.models import metadata

__all__ = ["make_engine", "metadata"]
