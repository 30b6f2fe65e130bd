"""The filter language of the search and agg endpoints: parse, check, match, and plan.

A filter is a JSON object, nestable::

    {"op": "must" | "must_not", "field": F, "conds": [v, ...]}   string, int64, bool, list<...>
    {"op": "range" | "range_out", "field": F, "gt" | "gte" | "lt" | "lte": x, ...}   int64, float32
    {"op": "and" | "or", "conds": [filter, ...]}

Every field must be a declared scalar field of the collection (the real service: "needs a
scalar index"). A record that lacks the field matches no filter on it, ``must_not`` and
``range_out`` included. For list fields, ``must`` matches when any element is in ``conds``
and ``must_not`` when none is. Anything malformed is a 400 ``InvalidParameter`` whose
message gives the path of the bad part (``filter.conds[1].gt``) and what is wrong.

``compile_filter`` returns a ``Filter``: ``matches(fields)`` decides one record, and
``source(view)`` offers candidates from the index structures (a rank interval of a sorted
field, or a set of keys) so that requests need not test every record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from airflow_provider_vikingdb.local.errors import ApiError, invalid
from airflow_provider_vikingdb.local.fields import (
    DISCRETE_TYPES,
    LIST_TYPES,
    NUMERIC_TYPES,
    is_number,
    scalar_problem,
)
from airflow_provider_vikingdb.local.index import IndexView

LEAF_OPS = ("must", "must_not", "range", "range_out")
LOGIC_OPS = ("and", "or")
BOUNDS = ("gt", "gte", "lt", "lte")
_MISSING = object()


@dataclass
class Source:
    """Candidate records for a filter, from the index structures.

    ``exact``: the candidates are exactly the matching records (no need to test them).
    ``field`` and ``intervals``: the candidates are the pairs of ``view.sorted[field]``
    with rank in these ``[start, stop)`` intervals (ascending, disjoint, in order);
    otherwise they are the set ``keys``.
    """

    exact: bool
    size: int
    field: str | None = None
    intervals: list[tuple[int, int]] | None = None
    keys: set[Any] | None = None
    #: not exact: what a candidate must still pass (None: the whole filter)
    residual: Callable[[Mapping[str, Any]], bool] | None = None

    def iter_keys(self, view: IndexView) -> Iterable[Any]:
        if self.keys is not None:
            return self.keys
        return (key for _, key in self.iter_pairs(view))

    def iter_pairs(self, view: IndexView, reverse: bool = False) -> Iterator[tuple[Any, Any]]:
        assert self.field is not None and self.intervals is not None
        pairs = view.sorted[self.field]
        for start, stop in reversed(self.intervals) if reverse else self.intervals:
            yield from pairs.slice(start, stop, reverse)


@dataclass
class Filter:
    op: str
    matches: Callable[[Mapping[str, Any]], bool]
    field: str | None = None
    conds: list[Any] = dc_field(default_factory=list)  # values (leaves) or Filters (and/or)
    bounds: dict[str, Any] = dc_field(default_factory=dict)

    def source(self, view: IndexView) -> Source | None:
        """Candidates from the index structures, or None: every record must be tested."""
        if self.op in ("range", "range_out"):
            pairs = view.sorted[self.field]  # type: ignore[index]
            start = (
                pairs.value_rank(self.bounds["gt"], inclusive_after=True)
                if "gt" in self.bounds
                else pairs.value_rank(self.bounds["gte"], inclusive_after=False)
                if "gte" in self.bounds
                else 0
            )
            stop = (
                pairs.value_rank(self.bounds["lt"], inclusive_after=False)
                if "lt" in self.bounds
                else pairs.value_rank(self.bounds["lte"], inclusive_after=True)
                if "lte" in self.bounds
                else len(pairs)
            )
            if self.op == "range":
                intervals = [(start, max(start, stop))]
            elif stop <= start:  # an empty range: everything with the field is outside it
                intervals = [(0, len(pairs))]
            else:
                intervals = [(0, start), (stop, len(pairs))]
            size = sum(b - a for a, b in intervals)
            return Source(exact=True, size=size, field=self.field, intervals=intervals)
        if self.op == "must":
            by_value = view.values[self.field]  # type: ignore[index]
            if len(self.conds) == 1:  # the index's own set: only read while the lock is held
                keys = by_value.get(self.conds[0], set())
            else:
                keys = set()
                for value in self.conds:
                    keys.update(by_value.get(value, ()))
            return Source(exact=True, size=len(keys), keys=keys)
        if self.op == "and":
            # and/or: conds holds the compiled sub-filters
            offered: list[tuple[Source, int]] = [
                (s, n) for n, s in enumerate(cond.source(view) for cond in self.conds) if s is not None
            ]
            if not offered:
                return None
            best, position = min(offered, key=lambda pair: pair[0].size)
            if not best.exact:
                return Source(False, best.size, best.field, best.intervals, best.keys, self.matches)
            rest = [cond.matches for n, cond in enumerate(self.conds) if n != position]
            if not rest:
                return best
            residual = rest[0] if len(rest) == 1 else (lambda record: all(test(record) for test in rest))
            return Source(False, best.size, best.field, best.intervals, best.keys, residual)
        if self.op == "or":
            union: set[Any] = set()
            exact = True
            for cond in self.conds:
                found = cond.source(view)
                if found is None:
                    return None
                exact = exact and found.exact
                union.update(found.iter_keys(view))
            return Source(exact=exact, size=len(union), keys=union)
        return None  # must_not: a complement; test every record


# --- parsing ---


def needs_scalar_index(collection: str, index_name: str, name: str, where: str) -> ApiError:
    """The 400 for a field that is not a declared scalar field (the service: "needs a scalar index")."""
    return invalid(
        f"{where}: field '{name}' needs a scalar index; index '{index_name}' of collection "
        f"'{collection}' has none for it (declare it: --field {collection}:{name}:TYPE, "
        "or fields={...} in Python)."
    )


def compile_filter(
    raw: Any, fields: Mapping[str, str], collection: str, index_name: str, where: str = "filter"
) -> Filter:
    """Check a filter against the declared ``fields``; ApiError 400 naming ``where`` if it is bad."""
    if not isinstance(raw, Mapping):
        raise invalid(f'{where} must be a JSON object like {{"op": "must", "field": ..., "conds": [...]}}.')
    op = raw.get("op")
    if op in LOGIC_OPS:
        _only_keys(raw, ("op", "conds"), where)
        conds = raw.get("conds")
        if not isinstance(conds, list) or not conds:
            raise invalid(f"{where}.conds must be a non-empty list of filters for op '{op}'.")
        children = [
            compile_filter(child, fields, collection, index_name, f"{where}.conds[{n}]")
            for n, child in enumerate(conds)
        ]
        test = (
            (lambda record: all(child.matches(record) for child in children))
            if op == "and"
            else (lambda record: any(child.matches(record) for child in children))
        )
        return Filter(op, test, conds=children)
    if op not in LEAF_OPS:
        raise invalid(f"{where}.op must be one of {', '.join(LEAF_OPS + LOGIC_OPS)}, not {op!r}.")
    name = raw.get("field")
    if not isinstance(name, str) or not name:
        raise invalid(f"{where}.field must be a field name (a non-empty string) for op '{op}'.")
    field_type = fields.get(name)
    if field_type is None:
        raise needs_scalar_index(collection, index_name, name, where)
    if op in ("must", "must_not"):
        return _compile_must(raw, op, name, field_type, where)
    return _compile_range(raw, op, name, field_type, where)


def _only_keys(raw: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise invalid(
            f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)} for op '{raw.get('op')}' "
            f"(allowed: {', '.join(allowed)})."
        )


def _compile_must(raw: Mapping[str, Any], op: str, name: str, field_type: str, where: str) -> Filter:
    _only_keys(raw, ("op", "field", "conds"), where)
    if field_type not in DISCRETE_TYPES:
        raise invalid(
            f"{where}: op '{op}' works on {', '.join(DISCRETE_TYPES)} fields; '{name}' is {field_type} "
            "(use range / range_out)."
        )
    conds = raw.get("conds")
    if not isinstance(conds, list) or not conds:
        raise invalid(f"{where}.conds must be a non-empty list of values for op '{op}'.")
    element_type = LIST_TYPES.get(field_type, field_type)
    for position, value in enumerate(conds):
        problem = scalar_problem(value, element_type)
        if problem:
            raise invalid(f"{where}.conds[{position}]: {problem}; field '{name}' is {field_type}.")
    wanted = set(conds)
    if field_type in LIST_TYPES:

        def any_in(record: Mapping[str, Any]) -> bool | None:
            value = record.get(name, _MISSING)
            if value is _MISSING:
                return None
            return any(element in wanted for element in value)

        found = any_in
    else:

        def found(record: Mapping[str, Any]) -> bool | None:
            value = record.get(name, _MISSING)
            return None if value is _MISSING else value in wanted

    if op == "must":
        return Filter(op, lambda record: found(record) is True, field=name, conds=conds)
    return Filter(op, lambda record: found(record) is False, field=name, conds=conds)


def _compile_range(raw: Mapping[str, Any], op: str, name: str, field_type: str, where: str) -> Filter:
    _only_keys(raw, ("op", "field", *BOUNDS), where)
    if field_type not in NUMERIC_TYPES:
        raise invalid(
            f"{where}: op '{op}' works on int64 and float32 fields; '{name}' is {field_type} "
            "(use must / must_not)."
        )
    bounds = {key: raw[key] for key in BOUNDS if key in raw}
    if not bounds:
        raise invalid(f"{where}: op '{op}' needs at least one of gt, gte, lt, lte.")
    for key, value in bounds.items():
        if not is_number(value):
            raise invalid(f"{where}.{key}: {value!r} is not a finite number.")
    if ("gt" in bounds and "gte" in bounds) or ("lt" in bounds and "lte" in bounds):
        raise invalid(f"{where}: give at most one lower bound (gt or gte) and one upper bound (lt or lte).")

    checks: list[Callable[[Any], bool]] = []
    if "gt" in bounds:
        gt = bounds["gt"]
        checks.append(lambda v: v > gt)
    if "gte" in bounds:
        gte = bounds["gte"]
        checks.append(lambda v: v >= gte)
    if "lt" in bounds:
        lt = bounds["lt"]
        checks.append(lambda v: v < lt)
    if "lte" in bounds:
        lte = bounds["lte"]
        checks.append(lambda v: v <= lte)
    inside = op == "range"

    def test(record: Mapping[str, Any]) -> bool:
        value = record.get(name, _MISSING)
        if value is _MISSING:
            return False
        return all(check(value) for check in checks) is inside

    return Filter(op, test, field=name, bounds=bounds)
