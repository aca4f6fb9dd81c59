"""The lake's SQL, written once in DuckDB's dialect, as Spark SQL.

sqlglot translates the dialect. Three things it leaves to us:

- ``ASOF JOIN`` (DuckDB only): each becomes a union of both sides, ordered by time, where
  every left row takes the last right row at or before it (``last_value(..., true)``). Each
  side travels as a struct named by its alias, so the query's qualified references (``w.x``,
  ``e.heading``, ``w.*``) read the same fields. A query with an ASOF join must therefore
  qualify its columns, and join on equalities plus one ``left.t >= right.t``. ``ASOF LEFT
  JOIN`` keeps the left rows with no right row before them, as DuckDB does.
- ``epoch(t)``: seconds with their fraction (Spark's ``unix_timestamp`` drops it).
- ``isfinite(x)``: Spark has none; NaN sorts above infinity there, so ``abs(x) < inf``.
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp


class UntranslatableSQL(ValueError):
    """A query the Spark translation cannot carry over faithfully."""


def _side(column: exp.Expression, alias: str) -> bool:
    return isinstance(column, exp.Column) and column.table == alias


def _asof_parts(join: exp.Join, right: str) -> tuple[list[tuple[str, str]], tuple[str, str]]:
    """The equality keys (left, right) and the time pair (left, right) of one ASOF join."""
    on = join.args.get("on")
    if on is None:
        raise UntranslatableSQL(f"ASOF JOIN {right} needs an ON clause")
    keys: list[tuple[str, str]] = []
    times: list[tuple[str, str]] = []
    for cond in on.flatten() if isinstance(on, exp.And) else [on]:
        a, b = cond.this, cond.expression
        if isinstance(cond, exp.LTE):  # right.t <= left.t
            cond, a, b = exp.GTE(this=b, expression=a), b, a
        if _side(a, right) and not isinstance(cond, exp.GTE):
            a, b = b, a
        if not _side(b, right) or _side(a, right):
            raise UntranslatableSQL(
                f"ASOF JOIN {right}: each condition must compare a column of {right} with the "
                f"left side, found {cond.sql('duckdb')}"
            )
        if isinstance(cond, exp.EQ):
            keys.append((a.sql("spark"), b.sql("spark")))
        elif isinstance(cond, exp.GTE):
            times.append((a.sql("spark"), b.sql("spark")))
        else:
            raise UntranslatableSQL(f"ASOF JOIN {right}: only = and >= conditions, found {cond}")
    if len(times) != 1:
        raise UntranslatableSQL(f"ASOF JOIN {right}: exactly one left.t >= {right}.t condition")
    return keys, times[0]


def _unqualified(select: exp.Select) -> list[str]:
    return sorted(
        {
            c.name
            for c in select.find_all(exp.Column)
            if not c.table and c.find_ancestor(exp.Select) is select
        }
    )


def _asof_select(select: exp.Select) -> exp.Expression:
    joins = select.args.get("joins") or []
    if not any(j.args.get("method") == "ASOF" for j in joins):
        return select
    if not all(j.args.get("method") == "ASOF" for j in joins):
        raise UntranslatableSQL("a query mixes ASOF joins with other joins; split it in CTEs")
    if loose := _unqualified(select):
        raise UntranslatableSQL(f"qualify these columns of a query with ASOF JOIN: {loose}")
    first = select.args["from_"].this
    aliases = [first.alias_or_name]
    source = first.sql("spark")
    carried = f"struct({aliases[0]}.*) AS {aliases[0]}"
    for n, join in enumerate(joins):
        right = join.this.alias_or_name
        keys, (lt, rt) = _asof_parts(join, right)
        k = [f"__k{i}" for i in range(len(keys))]
        nulls = ", ".join(f"NULL AS {a}" for a in aliases)
        left_keys = "".join(f"{lk} AS {ki}, " for (lk, _), ki in zip(keys, k, strict=True))
        right_keys = "".join(f"{rk} AS {ki}, " for (_, rk), ki in zip(keys, k, strict=True))
        union = (
            f"SELECT {left_keys}{lt} AS __ts, 1 AS __src, {carried}, NULL AS {right} "
            f"FROM {source} UNION ALL "
            f"SELECT {right_keys}{rt} AS __ts, 0 AS __src, {nulls}, struct({right}.*) AS {right} "
            f"FROM {join.this.sql('spark')}"
        )
        partition = f"PARTITION BY {', '.join(k)} " if k else ""
        names = ", ".join(aliases)
        source = (
            f"(SELECT {names}, {right} FROM (SELECT {names}, __src, last_value({right}, true) "
            f"OVER ({partition}ORDER BY __ts, __src "
            f"ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS {right} FROM ({union})) "
            f"WHERE __src = 1{'' if join.side == 'LEFT' else f' AND {right} IS NOT NULL'})"
            f" AS __asof{n}"
        )
        aliases.append(right)
        carried = ", ".join(aliases)  # the structs travel on as they are
    select = select.copy()
    select.set("joins", None)
    derived = sqlglot.parse_one(f"SELECT * FROM {source}", read="spark").args["from_"]
    select.set("from_", derived)
    return select


def _function(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.TimeToUnix):
        return sqlglot.parse_one(f"unix_micros({node.this.sql('spark')}) / 1e6", read="spark")
    if isinstance(node, exp.Anonymous) and node.name.lower() == "isfinite":
        (arg,) = node.expressions
        return sqlglot.parse_one(
            f"(abs({arg.sql('spark')}) < CAST('Infinity' AS DOUBLE))", read="spark"
        )
    return node


def to_spark(sql: str) -> str:
    """One DuckDB statement as Spark SQL."""
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.ParseError as e:
        raise UntranslatableSQL(str(e)) from e
    tree = tree.transform(_function).transform(
        lambda n: _asof_select(n) if isinstance(n, exp.Select) else n
    )
    return tree.sql("spark")
