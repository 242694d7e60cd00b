"""``Runner``: package the current project, register a temporary application, serve objects.

What a runner registers (the decision, and why): its own application, whose command runs
``python -m flame_agents.runner`` (this package's service) rather than a copy of the runtime's
``flmrun`` template as it stands, because ``flmrun`` runs flamepy's ``runpy`` and a user of
flame-agents must not need flamepy. The template still decides how Python is started: when it
runs ``-m flamepy.runner.runpy``, its command, arguments and environment are copied with our
module in place of flamepy's (the embedded runtime's interpreter; on a Flame cluster
``uv run --python python${FLAME_PYTHON_VERSION} python -m ...``). Without such a template the
command is ``python -m flame_agents.runner``.

The project is uploaded to the object cache as ``<name>/pkg/<name>.tar.gz`` and the application
names it the way Flame's installer reads it (``url: grpc://host:port/<key>``,
``installer: python``): each instance gets the package unpacked, installed with its
dependencies and put on its path before it starts.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from flame_agents import cache, core
from flame_agents._logging import get_logger
from flame_agents.cache import ObjectRef
from flame_agents.errors import (
    AlreadyExistsError,
    FlameAgentsError,
    InvalidArgumentError,
    InvalidStateError,
)
from flame_agents.runner._future import ObjectFuture, as_completed
from flame_agents.runner._package import build_package, check_dependencies
from flame_agents.runner._protocol import SERVICE_MODULE
from flame_agents.runner._service import RunnerService
from flame_agents.types import Application, ApplicationSpec, ResourceRequirement

__all__ = ["DEFAULT_TEMPLATE", "Runner", "runner_spec"]

DEFAULT_TEMPLATE = "flmrun"
"""The runtime's Python runner template (Flame's built-in application of that name)."""

_FLAMEPY_RUNPY = "flamepy.runner.runpy"
_PYTHON_VERSION = re.compile(r"\d+(\.\d+){0,2}")
_log = get_logger(__name__)


def runner_spec(
    name: str,
    template: Application | None,
    *,
    url: str,
    python_version: str | None,
) -> ApplicationSpec:
    """The application a runner registers (see the module docstring for each choice)."""
    base = template.spec if template is not None else None
    environments: dict[str, str] = {}
    if base is not None and _FLAMEPY_RUNPY in base.arguments:
        command = base.command
        arguments = tuple(SERVICE_MODULE if a == _FLAMEPY_RUNPY else a for a in base.arguments)
        environments.update(base.environments)
        image, labels = base.image, base.labels
        max_instances, delay_release = base.max_instances, base.delay_release
    else:
        command, arguments = "python", ("-m", SERVICE_MODULE)
        image, labels, max_instances, delay_release = None, (), None, None
        if base is not None:
            max_instances, delay_release = base.max_instances, base.delay_release
    if python_version is not None:
        environments["FLAME_PYTHON_VERSION"] = python_version
    return ApplicationSpec(
        description=f"Runner application {name} (flame_agents.runner; removed when it closes)",
        labels=labels,
        image=image,
        command=command,
        arguments=arguments,
        environments=environments,
        max_instances=max_instances,
        delay_release=delay_release,
        url=url,
        installer="python",
    )


def _package_url(ref: ObjectRef) -> str:
    # Flame's installer reads grpc[s]://host:port/<key> (flamepy writes it the same way).
    endpoint = ref.endpoint.replace("grpc+tls://", "grpcs://", 1).rstrip("/")
    return f"{endpoint}/{ref.key}"


def _is_runner_app(app: Application) -> bool:
    return SERVICE_MODULE in app.spec.arguments


class Runner:
    """Run functions, classes and objects of the current project on a runtime's instances.

    Creating a runner packages the project folder (by default the current working directory,
    without virtual environments, caches and VCS folders), uploads it to the object cache and
    registers a temporary application ``name`` that serves it. :meth:`service` then exposes a
    function, class or object: each call of it runs remotely and returns an
    :class:`ObjectFuture`. Closing the runner (also on leaving a ``with`` block) closes its
    services' sessions, unregisters the application and deletes everything it stored in the
    cache (the package and every result).

    Example::

        from flame_agents.runner import Runner
        from mylib import score, Model

        with Runner("scoring") as runner:
            score_svc = runner.service(score)
            futures = [score_svc(x) for x in range(10)]
            print(runner.get(futures))
            model = runner.service(Model)                # one Model() per instance
            print(model.predict(score_svc(3)).get())     # a future as an argument

    The exposed code must be importable on the instances: from the project's modules (which
    the runner ships), from ``dependencies``, or defined in the script that runs the runner.
    """

    def __init__(
        self,
        name: str,
        *,
        fail_if_exists: bool = False,
        dependencies: Sequence[str] | None = None,
        python_version: str | None = None,
        project: str | os.PathLike[str] | None = None,
        excludes: Sequence[str] = (),
        template: str = DEFAULT_TEMPLATE,
    ) -> None:
        """Package the project and register the application ``name``.

        Args:
            name: The application to register (Flame's application name rules).
            fail_if_exists: If an application ``name`` exists already, raise
                AlreadyExistsError instead of reusing it. A reused application (another
                runner's, e.g. a runner created inside a runner's instance) is left as it is
                on close: only this runner's sessions and results are removed.
            dependencies: Requirements to install on the instances (``["numpy", "pandas>=2"]``)
                for a project without ``pyproject.toml``/``setup.py``/``setup.cfg``; a project
                with them declares its dependencies there.
            python_version: The Python to run (``"3.12"``), given to the runtime as
                ``FLAME_PYTHON_VERSION``: Flame's ``flmrun`` starts that version; the
                embedded runtime runs its own interpreter and accepts only its version.
            project: The folder to package (default: the current working directory).
            excludes: More glob patterns of files and folders to leave out.
            template: The runtime's runner template to follow (see the module docstring).

        Raises:
            AlreadyExistsError: ``name`` exists and ``fail_if_exists`` is set, or it exists
                and is not a runner application.
            InvalidArgumentError: a bad name, project folder, dependency or version.
        """
        if python_version is not None and (
            not isinstance(python_version, str) or not _PYTHON_VERSION.fullmatch(python_version)
        ):
            raise InvalidArgumentError(
                f"python_version must look like '3.12', got {python_version!r}",
                python_version=python_version,
            )
        self._name = name
        self._lock = threading.Lock()
        self._services: list[RunnerService] = []
        self._closed = False
        self._owned = False
        deps = check_dependencies(dependencies)
        existing = core.get_application(name)  # also checks the name
        if existing is not None:
            if fail_if_exists:
                raise AlreadyExistsError(
                    f"application {name!r} already exists; choose another runner name, or "
                    "pass fail_if_exists=False to reuse it",
                    application=name,
                )
            if not _is_runner_app(existing):
                raise AlreadyExistsError(
                    f"application {name!r} already exists and is not a runner application "
                    f"(it does not run {SERVICE_MODULE}); choose another runner name",
                    application=name,
                )
            _log.info("reusing the registered runner application", app=name)
            return
        folder = Path(project) if project is not None else Path.cwd()
        self._register(folder, deps, python_version, tuple(excludes), template)
        self._owned = True

    def _register(
        self,
        folder: Path,
        deps: tuple[str, ...],
        python_version: str | None,
        excludes: tuple[str, ...],
        template_name: str,
    ) -> None:
        name = self._name
        template = core.get_application(template_name)
        data = build_package(folder, name=name, dependencies=deps, excludes=excludes)
        ref = cache.put_raw(f"{name}/pkg/{name}.tar.gz", data)
        url = _package_url(ref)
        spec = runner_spec(name, template, url=url, python_version=python_version)
        try:
            core.register_application(name, spec)
        except BaseException:
            with contextlib.suppress(FlameAgentsError):
                cache.delete_objects(f"{name}/pkg")
            raise
        _log.debug("runner application registered", app=name, url=url)

    # -- public API ------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The runner's application name."""
        return self._name

    def service(
        self,
        obj: Any,
        *,
        autoscale: bool | None = None,
        warmup: int = 0,
        resreq: ResourceRequirement | Mapping[str, Any] | str | None = None,
    ) -> RunnerService:
        """Expose ``obj`` (a function, a class or an object) as a remote service.

        Args:
            obj: A function (calls run it), a class (each instance makes one object with
                ``obj()``; calls run its public methods) or an object (one instance holds
                it; its state is saved after each call).
            autoscale: Functions and classes: start instances as calls arrive (default
                True), or keep ``warmup`` (at least one) running (False). An object is one
                instance, always.
            warmup: Instances started before the first call (an object: 0 or 1).
            resreq: Resources of each instance: a ResourceRequirement, ``"cpu=2,mem=4g"``
                or a mapping (default: the runtime's).

        Raises:
            InvalidStateError: the runner is closed.
            InvalidArgumentError: ``obj`` cannot be pickled or has no public method, or the
                autoscale/warmup combination does not fit it.
        """
        self._check_open()
        svc = RunnerService(self._name, obj, autoscale=autoscale, warmup=warmup, resreq=resreq)
        with self._lock:
            closed = self._closed
            if not closed:
                self._services.append(svc)
        if closed:  # closed meanwhile, by another thread
            svc.close()
            self._check_open()
        return svc

    def get(self, futures: Iterable[ObjectFuture]) -> list[Any]:
        """The results of ``futures``, in their order (raises the first failure met)."""
        return [f.get() for f in futures]

    def wait(self, futures: Iterable[ObjectFuture]) -> None:
        """Wait until every call of ``futures`` has finished (raises the first failure met)."""
        for f in futures:
            f.wait()

    def select(self, futures: Iterable[ObjectFuture]) -> Iterator[ObjectFuture]:
        """Yield ``futures`` as their calls finish, first finished first."""
        return as_completed(futures)

    def put_object(self, obj: Any) -> ObjectRef:
        """Store ``obj`` in the object cache under ``<name>/shared`` (deleted on close).

        Pass the ref as an argument of calls: each receives the object, read from the
        cache on the instance, so a large input is uploaded once.
        """
        self._check_open()
        return cache.put_object(f"{self._name}/shared", obj)

    def close(self) -> None:
        """Close the services, unregister the application and delete its objects (idempotent).

        Each step is attempted even if an earlier one fails; the first failure is raised at
        the end. A reused application (see ``fail_if_exists``) stays registered: only this
        runner's sessions and their objects are removed.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            services = list(self._services)
        errors: list[FlameAgentsError] = []
        for svc in services:
            _attempt(errors, "close_service", svc.close)
        if self._owned:
            _attempt(errors, "unregister", lambda: core.unregister_application(self._name))
            _attempt(errors, "delete_objects", lambda: cache.delete_objects(f"{self._name}/*"))
        else:
            for svc in services:
                prefix = f"{self._name}/{svc.session_id}"
                _attempt(errors, "delete_objects", lambda p=prefix: cache.delete_objects(p))
        if errors:
            raise errors[0]

    def __enter__(self) -> Runner:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        try:  # already failing: a failed cleanup must not hide the original error
            self.close()
        except FlameAgentsError as close_exc:
            _log.warning("runner_close_failed", app=self._name, error=str(close_exc))

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Runner {self._name!r} ({state}, {len(self._services)} services)>"

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidStateError(
                f"runner {self._name!r} is closed; create a new Runner to run more",
                application=self._name,
            )


def _attempt(errors: list[FlameAgentsError], step: str, action: Any) -> None:
    try:
        action()
    except FlameAgentsError as exc:
        _log.warning("runner_cleanup_failed", step=step, error=str(exc))
        errors.append(exc)
