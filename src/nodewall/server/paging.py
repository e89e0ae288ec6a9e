"""Pagination of the list routes: `?limit=N` (1..1000, default 100) and `?cursor=C` from the
previous page's `next_cursor` (null on the last page). A cursor is the id of the last row of the
previous page (an integer, answered as text); a new row gets an id above every existing one, so
paging never skips or repeats a row that exists throughout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

from fastapi import Query
from sqlalchemy import Select

T = TypeVar("T")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")]
#: Row ids are 32-bit integers in both databases.
Cursor = Annotated[int | None, Query(ge=1, le=2**31 - 1,
                                     description="`next_cursor` of the previous page.")]


def after(cursor: int | None) -> int | None:
    return cursor


def ascending(stmt: Select[Any], id_column: Any, limit: int, cursor: int | None) -> Select[Any]:
    """`stmt` restricted to the page after `cursor`, in id order, one row more than `limit`
    (to learn whether another page follows)."""
    start = after(cursor)
    if start is not None:
        stmt = stmt.where(id_column > start)
    return stmt.order_by(id_column).limit(limit + 1)


def cut(rows: Sequence[T], limit: int, key: Any) -> tuple[Sequence[T], str | None]:
    """The page and the next cursor (None: no more rows)."""
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], str(key(rows[limit - 1]))
