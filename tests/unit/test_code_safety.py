"""Rules of docs/RELIABILITY.md (Security) that the code itself must keep, checked on its source:
SQL only with bound parameters, and secrets compared only in constant time."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SQL_TEXT = {"text", "exec_driver_sql", "literal_column", "literal", "TextClause"}
SECRET_WORDS = ("secret", "password", "signature", "token", "digest", "credential")

#: Reviewed exceptions: (file, line text) → why the string is not built from outside data.
SQL_REVIEWED = {
    ("services/ops/sql.py", "result = conn.execute(text(sql))"): (
        "`mediacdr sql` runs the operator's own statement, as the database user of "
        "MEDIACDR_DATABASE_URL, rolled back; nothing reaches it from the network"
    ),
    ("services/store/engine.py", 'cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")'): (
        "an int() of a setting; PRAGMA takes no bound parameter"
    ),
}


def _sources() -> Iterator[tuple[Path, ast.AST, list[str]]]:
    for folder in ("services", "migrations"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            yield path.relative_to(ROOT), ast.parse(source), source.splitlines()


def _name(func: ast.expr) -> str:
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


def _is_built(node: ast.expr) -> bool:
    """A string put together at run time: an f-string, + or % on strings, or str.format."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        return True
    if isinstance(node, ast.Call) and _name(node.func) == "format":
        # psycopg's sql.SQL(...).format(sql.Identifier(...)) quotes what it composes
        target = getattr(node.func, "value", None)
        return not (isinstance(target, ast.Call) and _name(target.func) == "SQL")
    return False


def _uses_only_identifiers(node: ast.expr) -> bool:
    """An f-string whose every value is a schema identifier (``table.name``) or a constant."""
    if not isinstance(node, ast.JoinedStr):
        return False
    for value in node.values:
        if isinstance(value, ast.FormattedValue):
            inner = value.value
            if not (isinstance(inner, ast.Attribute) and inner.attr == "name"):
                return False
    return True


def test_sql_is_only_ever_built_with_bound_parameters() -> None:
    """No SQL string is put together from values: values go in as bound parameters (SQLAlchemy
    Core expressions, ``bindparam``). Identifiers from the code's own tables, and the reviewed
    cases above, are the exceptions."""
    found = []
    for path, tree, lines in _sources():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name, first = _name(node.func), node.args[0]
            line = lines[node.lineno - 1].strip()
            if (str(path), line) in SQL_REVIEWED:
                continue
            textual = name in SQL_TEXT and not isinstance(first, ast.Constant)
            built = name in {"execute", *SQL_TEXT} and _is_built(first)
            identifiers_only = _uses_only_identifiers(first) or (
                path.parts[0] == "migrations" and _is_constant_loop_name(first)
            )
            if (textual or built) and not identifiers_only:
                found.append(f"{path}:{node.lineno}: {line}")
    assert not found, "SQL built from values:\n" + "\n".join(found)


def _is_constant_loop_name(node: ast.expr) -> bool:
    """Migrations interpolate column names from literal tuples in the same function."""
    return isinstance(node, ast.JoinedStr) and all(
        isinstance(v, ast.Constant) or isinstance(v.value, ast.Name)
        for v in node.values
        if isinstance(v, ast.FormattedValue | ast.Constant)
    )


def test_secrets_are_compared_in_constant_time() -> None:
    """``==`` on a secret leaks how much of a guess was right through timing; secrets and
    signatures are compared with ``hmac.compare_digest``."""
    found = []
    for path, tree, lines in _sources():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare):
                continue
            if not any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
                continue
            sides = [node.left, *node.comparators]
            if any(isinstance(side, ast.Constant) and side.value is None for side in sides):
                continue  # "is it set at all" is no comparison of its value
            names = [_identifier(side).lower() for side in sides]
            if any(word in n for n in names for word in SECRET_WORDS):
                found.append(f"{path}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not found, "secrets compared with ==:\n" + "\n".join(found)


def _identifier(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call):
        return _identifier(node.func)
    return ""


def test_the_api_compares_its_secret_with_compare_digest() -> None:
    source = (ROOT / "services/api/auth.py").read_text(encoding="utf-8")
    assert source.count("hmac.compare_digest(") >= 3  # bearer, basic user, basic password
