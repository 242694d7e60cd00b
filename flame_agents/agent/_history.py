"""``History[T]``: the append-only field type of agent contexts.

A history is a sequence whose older items may live in sealed chunks of the state object that are
only read when indexed or iterated, and whose appends since the start of an invocation become
that invocation's patch delta. It cannot be shrunk or reassigned: append-only is what lets a
commit cost O(change).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar, get_args, overload

from pydantic import GetCoreSchemaHandler, TypeAdapter
from pydantic_core import core_schema

__all__ = ["History"]

T = TypeVar("T")

#: ``load(chunk_index) -> JSON items`` of one sealed chunk.
ChunkLoader = Callable[[int], list[Any]]


class _Sealed:
    """The sealed (stored, immutable) prefix of a history, shared by every copy of it."""

    __slots__ = ("cache", "chunk", "count", "loader")

    def __init__(self, count: int, chunk: int, loader: ChunkLoader | None) -> None:
        self.count = count
        self.chunk = chunk
        self.loader = loader
        self.cache: dict[int, list[Any]] = {}

    @property
    def length(self) -> int:
        return self.count * self.chunk

    def load(self, index: int, adapter: TypeAdapter[Any] | None) -> list[Any]:
        # Chunks never change once sealed, so caching them for the life of the object is safe.
        items = self.cache.get(index)
        if items is None:
            if self.loader is None:
                raise RuntimeError("this History has sealed chunks but no loader")
            raw = self.loader(index)
            items = [adapter.validate_python(x) for x in raw] if adapter else list(raw)
            self.cache[index] = items
        return items


class History(Generic[T]):
    """An append-only list of ``T`` stored as patch deltas; declare it as a context field::

        messages: History[Message] = Field(default_factory=History)

    Supports ``append``, ``extend``, ``len``, iteration, indexing and slicing. Indexing into
    older items loads only the chunk that holds them.
    """

    __slots__ = ("_adapter", "_lineage", "_mark", "_sealed", "_tail")

    def __init__(self, items: Iterable[T] = ()) -> None:
        self._adapter: TypeAdapter[Any] | None = None
        self._sealed = _Sealed(0, 1, None)
        self._tail: list[Any] = list(items)
        self._mark = 0
        # Copies of one history share a lineage; a field whose lineage changed was reassigned.
        self._lineage = object()

    # -- the sequence API -------------------------------------------------------------------

    def append(self, item: T) -> None:
        """Append one item (validated against ``T``)."""
        self._tail.append(self._validate(item))

    def extend(self, items: Iterable[T]) -> None:
        """Append several items in order."""
        self._tail.extend(self._validate(x) for x in items)

    def __len__(self) -> int:
        return self._sealed.length + len(self._tail)

    def __iter__(self) -> Iterator[T]:
        for index in range(self._sealed.count):
            yield from self._sealed.load(index, self._adapter)
        yield from self._tail

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            return [self._item(i) for i in range(*index.indices(len(self)))]
        size = len(self)
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError("History index out of range")
        return self._item(index)

    def _item(self, index: int) -> T:
        sealed = self._sealed
        if index >= sealed.length:
            item: T = self._tail[index - sealed.length]
            return item
        chunk: T = sealed.load(index // sealed.chunk, self._adapter)[index % sealed.chunk]
        return chunk

    def tolist(self) -> list[T]:
        """Every item, loading all sealed chunks."""
        return list(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, History):
            return len(self) == len(other) and self.tolist() == other.tolist()
        if isinstance(other, list):
            return self.tolist() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like list

    def __repr__(self) -> str:
        return f"History(len={len(self)}, tail={self._tail[-3:]!r})"

    # -- internals used by the journal ------------------------------------------------------

    def _validate(self, item: Any) -> Any:
        return self._adapter.validate_python(item) if self._adapter is not None else item

    def _bind(self, adapter: TypeAdapter[Any]) -> History[T]:
        if self._adapter is None:
            self._adapter = adapter
            self._tail = [adapter.validate_python(x) for x in self._tail]
        return self

    @classmethod
    def _stored(
        cls,
        *,
        sealed: int,
        chunk: int,
        tail: list[Any],
        loader: ChunkLoader | None,
        adapter: TypeAdapter[Any] | None,
    ) -> History[Any]:
        """A history over stored state: ``sealed`` chunks behind ``loader``, then ``tail``."""
        history: History[Any] = cls()
        history._sealed = _Sealed(sealed, chunk, loader)
        history._tail = [adapter.validate_python(x) for x in tail] if adapter else list(tail)
        history._adapter = adapter
        history._mark = len(history._tail)
        return history

    def _fork(self) -> History[T]:
        """A working copy for one invocation: same sealed chunks and lineage, own tail."""
        fork: History[T] = History()
        fork._adapter = self._adapter
        fork._sealed = self._sealed
        fork._tail = list(self._tail)
        fork._mark = len(self._tail)
        fork._lineage = self._lineage
        return fork

    def _same_lineage(self, other: History[Any]) -> bool:
        return self._lineage is other._lineage

    def _appended(self) -> list[Any]:
        """Items appended since this copy was made (the patch delta), as JSON values."""
        new = self._tail[self._mark :]
        if self._adapter is None:
            return list(new)
        return [self._adapter.dump_python(x, mode="json") for x in new]

    def __deepcopy__(self, memo: dict[int, Any]) -> History[T]:
        return self._fork()

    # -- pydantic integration ---------------------------------------------------------------

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        args = get_args(source)
        item_type: Any = args[0] if args else Any
        item_schema = handler.generate_schema(item_type)
        adapter_box: list[TypeAdapter[Any]] = []

        def adapter() -> TypeAdapter[Any]:
            # Built lazily: the item type may be a forward reference at class creation time.
            if not adapter_box:
                adapter_box.append(TypeAdapter(item_type))
            return adapter_box[0]

        def from_python(value: Any) -> History[Any]:
            if isinstance(value, History):
                return value._bind(adapter())
            if isinstance(value, (list, tuple)):
                return History(value)._bind(adapter())
            raise ValueError("expected a History or a list")

        def from_json_list(items: list[Any]) -> History[Any]:
            return History(items)._bind(adapter())

        def to_list(value: History[Any]) -> list[Any]:
            return value.tolist()

        return core_schema.json_or_python_schema(
            json_schema=core_schema.no_info_after_validator_function(
                from_json_list, core_schema.list_schema(item_schema)
            ),
            python_schema=core_schema.no_info_plain_validator_function(from_python),
            serialization=core_schema.plain_serializer_function_ser_schema(
                to_list, return_schema=core_schema.list_schema(item_schema)
            ),
        )
