"""What an index holds, with the structures that make filters, ordering and counts fast.

``IndexView`` is the index's copy of the collection (as of the index lag) plus, per
declared scalar field:

- int64 and float32: a ``SortedPairs`` of ``(value, primary key)``, ascending, for
  ``range`` / ``range_out`` filters (bisect, then a slice) and ``search/scalar`` ordering;
- int64, string, bool and the list types: ``value -> set of primary keys`` (for lists,
  one entry per element), for ``must`` and ``agg`` group-by.

Both are kept in step with every put and remove, so a request reads them as they are.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from airflow_provider_vikingdb.local.fields import DISCRETE_TYPES, LIST_TYPES, NUMERIC_TYPES

#: Target bucket size of SortedPairs: inserts move at most ~2x this many references.
BUCKET = 512


class _Top:
    """Compares greater than any primary key: ``(v, TOP)`` sorts after every ``(v, key)``."""

    def __lt__(self, other: object) -> bool:
        return False

    def __le__(self, other: object) -> bool:
        return other is self

    def __gt__(self, other: object) -> bool:
        return other is not self

    def __ge__(self, other: object) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        return other is self

    def __hash__(self) -> int:
        return 0


TOP = _Top()


class SortedPairs:
    """``(value, key)`` pairs in ascending order, as a list of sorted buckets (stdlib only).

    Insert and remove cost a bisect plus a move within one bucket; ranks (how many
    pairs sort before a probe) cost a bisect plus summing bucket lengths.
    """

    def __init__(self, pairs: Iterable[tuple[Any, Any]] = ()) -> None:
        self._buckets: list[list[tuple[Any, Any]]] = []
        self._maxes: list[tuple[Any, Any]] = []
        self._len = 0
        self._build(sorted(pairs))

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        for bucket in self._buckets:
            yield from bucket

    def _build(self, ordered: list[tuple[Any, Any]]) -> None:
        self._buckets = [ordered[start : start + BUCKET] for start in range(0, len(ordered), BUCKET)]
        self._maxes = [bucket[-1] for bucket in self._buckets]
        self._len = len(ordered)

    def clear(self) -> None:
        self._build([])

    def add(self, pair: tuple[Any, Any]) -> None:
        if not self._buckets:
            self._buckets.append([pair])
            self._maxes.append(pair)
            self._len = 1
            return
        i = bisect_left(self._maxes, pair)
        if i == len(self._maxes):
            i -= 1
            self._buckets[i].append(pair)
            self._maxes[i] = pair
        else:
            insort(self._buckets[i], pair)
        self._len += 1
        bucket = self._buckets[i]
        if len(bucket) > 2 * BUCKET:
            half = bucket[BUCKET:]
            del bucket[BUCKET:]
            self._buckets.insert(i + 1, half)
            self._maxes[i] = bucket[-1]
            self._maxes.insert(i + 1, half[-1])

    def update(self, pairs: list[tuple[Any, Any]]) -> None:
        """Add many pairs; rebuilds at once when they are many (a bulk load)."""
        if len(pairs) > max(self._len // 8, BUCKET):
            self._build(sorted([*self, *pairs]))
        else:
            for pair in pairs:
                self.add(pair)

    def remove(self, pair: tuple[Any, Any]) -> None:
        i = bisect_left(self._maxes, pair)
        if i < len(self._buckets):
            bucket = self._buckets[i]
            j = bisect_left(bucket, pair)
            if j < len(bucket) and bucket[j] == pair:
                del bucket[j]
                self._len -= 1
                if bucket:
                    self._maxes[i] = bucket[-1]
                else:
                    del self._buckets[i]
                    del self._maxes[i]
                return
        raise KeyError(pair)

    def rank(self, probe: tuple[Any, ...], right: bool = False) -> int:
        """How many pairs sort before ``probe`` (``right``: before or equal to it)."""
        find = bisect_right if right else bisect_left
        i = find(self._maxes, probe)
        if i == len(self._buckets):
            return self._len
        return sum(map(len, self._buckets[:i])) + find(self._buckets[i], probe)

    def value_rank(self, value: Any, inclusive_after: bool) -> int:
        """Pairs with a value below ``value`` (``inclusive_after``: below or equal to it)."""
        return self.rank((value, TOP) if inclusive_after else (value,))

    def slice(self, start: int, stop: int, reverse: bool = False) -> Iterator[tuple[Any, Any]]:
        """Pairs of rank ``start`` to ``stop - 1``, ascending (``reverse``: descending)."""
        start, stop = max(start, 0), min(stop, self._len)
        if start >= stop:
            return
        if not reverse:
            i, j = self._position(start)
            left = stop - start
            while left > 0:
                chunk = self._buckets[i][j : j + left]
                yield from chunk
                left -= len(chunk)
                i, j = i + 1, 0
        else:
            i, j = self._position(stop - 1)
            left = stop - start
            while left > 0:
                low = max(j + 1 - left, 0)
                chunk = self._buckets[i][low : j + 1]
                yield from reversed(chunk)
                left -= len(chunk)
                i -= 1
                j = len(self._buckets[i]) - 1 if i >= 0 else 0

    def _position(self, rank: int) -> tuple[int, int]:
        for i, bucket in enumerate(self._buckets):
            if rank < len(bucket):
                return i, rank
            rank -= len(bucket)
        raise IndexError(rank)


def _elements(value: Any, is_list: bool) -> Iterable[Any]:
    return set(value) if is_list else (value,)


class IndexView:
    """An index's records (primary key -> fields), the write each came from, and lookups."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        self.fields: dict[str, str] = {}
        self.records: dict[Any, dict[str, Any]] = {}
        #: sequence number of the write each record comes from (see Collection)
        self.seqs: dict[Any, int] = {}
        self.sorted: dict[str, SortedPairs] = {}
        self.values: dict[str, dict[Any, set[Any]]] = {}
        for name, field_type in fields.items():
            self.add_field(name, field_type)

    def __len__(self) -> int:
        return len(self.records)

    def add_field(self, name: str, field_type: str) -> None:
        """Index one more field, from the records already held."""
        self.fields[name] = field_type
        if field_type in NUMERIC_TYPES:
            self.sorted[name] = SortedPairs(
                (fields[name], key) for key, fields in self.records.items() if name in fields
            )
        if field_type in DISCRETE_TYPES:
            self.values[name] = {}
            is_list = field_type in LIST_TYPES
            for key, fields in self.records.items():
                if name in fields:
                    for element in _elements(fields[name], is_list):
                        self.values[name].setdefault(element, set()).add(key)

    def put(self, key: Any, fields: dict[str, Any], seq: int) -> None:
        old = self.records.get(key)
        if old is not None:
            self._unindex(key, old)
        self.records[key] = fields
        self.seqs[key] = seq
        self._index(key, fields)

    def put_many(self, items: list[tuple[Any, dict[str, Any]]], seq: int) -> None:
        """Put many records at once (a bulk load): sorted structures are rebuilt once."""
        items = list(dict(items).items())  # the last row of a key wins, as with one put each
        for key, _ in items:
            self.remove(key)
        for key, fields in items:
            self.records[key] = fields
            self.seqs[key] = seq
        for name, pairs in self.sorted.items():
            pairs.update([(fields[name], key) for key, fields in items if name in fields])
        for name, by_value in self.values.items():
            is_list = self.fields[name] in LIST_TYPES
            for key, fields in items:
                if name in fields:
                    for element in _elements(fields[name], is_list):
                        by_value.setdefault(element, set()).add(key)

    def remove(self, key: Any) -> None:
        old = self.records.pop(key, None)
        if old is not None:
            del self.seqs[key]
            self._unindex(key, old)

    def remove_older_than(self, seq: int) -> None:
        """What a ``del_all`` does when it reaches the index: drop records written before it."""
        stale = [key for key, written in self.seqs.items() if written < seq]
        if len(stale) == len(self.records):
            self.clear()
        else:
            for key in stale:
                self.remove(key)

    def clear(self) -> None:
        self.records.clear()
        self.seqs.clear()
        for pairs in self.sorted.values():
            pairs.clear()
        for by_value in self.values.values():
            by_value.clear()

    def _index(self, key: Any, fields: dict[str, Any]) -> None:
        for name, pairs in self.sorted.items():
            if name in fields:
                pairs.add((fields[name], key))
        for name, by_value in self.values.items():
            if name in fields:
                for element in _elements(fields[name], self.fields[name] in LIST_TYPES):
                    by_value.setdefault(element, set()).add(key)

    def _unindex(self, key: Any, fields: dict[str, Any]) -> None:
        for name, pairs in self.sorted.items():
            if name in fields:
                pairs.remove((fields[name], key))
        for name, by_value in self.values.items():
            if name in fields:
                for element in _elements(fields[name], self.fields[name] in LIST_TYPES):
                    keys = by_value.get(element)
                    if keys is not None:
                        keys.discard(key)
                        if not keys:
                            del by_value[element]
