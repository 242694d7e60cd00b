"""``ContextModel``: the typed, versioned, migratable context of an agent session.

A context is a pydantic model whose fields are either *scalar* fields (any JSON-able value,
stored whole when it changes) or :class:`History` fields (append-only, stored as deltas). The
class carries a ``schema_version``; migrations registered with :meth:`ContextModel.migration`
upgrade stored state written by an older version of the class when it is read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError

from flame_agents.agent._history import History
from flame_agents.errors import ContextValidationError

__all__ = ["ContextModel", "Migration"]

#: ``migrate(state) -> state`` from version N to N+1; history fields appear as whole lists.
Migration = Callable[[dict[str, Any]], dict[str, Any]]

C = TypeVar("C", bound="ContextModel")


class ContextModel(BaseModel):
    """Base class of agent contexts.

    Declare ``schema_version`` (default 1) and bump it when the stored shape changes; register
    one migration per step::

        class ChatContext(ContextModel):
            schema_version = 2
            turns: int = 0
            messages: History[Message] = Field(default_factory=History)

        @ChatContext.migration(from_version=1)
        def _add_turns(state: dict[str, Any]) -> dict[str, Any]:
            return {**state, "turns": len(state["messages"])}
    """

    # validate_default binds History defaults to their item type.
    model_config = ConfigDict(validate_default=True)

    schema_version: ClassVar[int] = 1
    _migrations: ClassVar[dict[int, Migration]] = {}
    _history_fields: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        # Each class owns its migrations; a subclass starts from its parent's.
        cls._migrations = dict(cls._migrations)
        if not isinstance(cls.schema_version, int) or cls.schema_version < 1:
            raise TypeError(f"{cls.__name__}.schema_version must be an int >= 1")
        cls._history_fields = tuple(
            name
            for name, info in cls.model_fields.items()
            if info.annotation is History or get_origin(info.annotation) is History
        )

    @classmethod
    def migration(cls, *, from_version: int) -> Callable[[Migration], Migration]:
        """Register ``fn`` upgrading stored state from ``from_version`` to ``from_version + 1``."""

        if not 1 <= from_version < cls.schema_version:
            raise ValueError(
                f"{cls.__name__}: a migration from version {from_version} must satisfy "
                f"1 <= from_version < schema_version ({cls.schema_version})"
            )

        def register(fn: Migration) -> Migration:
            cls._migrations[from_version] = fn
            return fn

        return register

    @classmethod
    def history_fields(cls) -> tuple[str, ...]:
        """Names of the :class:`History` fields (stored as append-only logs)."""
        return cls._history_fields

    @classmethod
    def migrate(cls, state: Mapping[str, Any], *, from_version: int) -> dict[str, Any]:
        """Upgrade a JSON ``state`` stored at ``from_version`` to :attr:`schema_version`."""
        if from_version > cls.schema_version:
            raise ContextValidationError(
                f"stored state has schema version {from_version}, newer than "
                f"{cls.__name__}.schema_version ({cls.schema_version}): upgrade this code",
                stored_version=from_version,
            )
        data = dict(state)
        for version in range(from_version, cls.schema_version):
            step = cls._migrations.get(version)
            if step is None:
                raise ContextValidationError(
                    f"no migration registered for {cls.__name__} from version {version} to "
                    f"{version + 1}: add one with @{cls.__name__}.migration(from_version="
                    f"{version})",
                    stored_version=from_version,
                )
            data = dict(step(data))
        return data

    def scalar_state(self) -> dict[str, Any]:
        """The non-history fields as JSON values (what a patch's ``set`` diffs)."""
        return self.model_dump(mode="json", exclude=set(self._history_fields))

    @classmethod
    def validate_state(cls: type[C], data: Mapping[str, Any], *, what: str) -> C:
        """Validate ``data`` into the model, raising :class:`ContextValidationError`."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ContextValidationError(
                f"{what}: {cls.__name__} does not validate: {exc}", context_type=cls.__name__
            ) from exc
