"""Drive one service process's Instance service, as Flame's host shim does.

An :class:`InstanceProcess` is one executor: a :class:`~._launched_process.LaunchedProcess`
(started, and ready on its Unix socket) that we call ``OnSessionEnter`` on once, then
``OnTaskInvoke`` one at a time, and ``OnSessionLeave`` before the process is ended. Our
``CancelTask`` asks it to stop a running task.

The process is watched while a task runs: if it dies, :meth:`InstanceProcess.invoke` raises
:class:`InstanceLost` at once instead of waiting for the transport to notice.

Messages both ways are bounded by the runtime's ``--max-message-bytes`` (passed to the service in
``FLAME_AGENTS_MAX_MESSAGE_BYTES``; see ``_wire.limits``). A reply over it, or a service that
refuses a message as too large (gRPC's RESOURCE_EXHAUSTED), fails that task once with a message
naming the option: the process is alive and its handler already ran, so it is neither killed
nor given the task again.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

import grpc
import grpc.aio

from flame_agents._wire import shim_pb2, types_pb2
from flame_agents._wire.cancel import instance_cancel_callable
from flame_agents._wire.errors import rpc_status
from flame_agents._wire.limits import output_budget, refused_as_too_large, reply_too_large
from flame_agents.runtime._launch import (
    BIND_ENTER_FAILED,
    BindError,
    InstanceLost,
    MessageRejected,
    TaskOutcome,
    TaskTimeout,
    describe_exit,
)
from flame_agents.runtime.launch._launched_process import LaunchedProcess

__all__ = ["InstanceProcess"]

_CANCEL_RPC_TIMEOUT = 5.0
"""Seconds the instance has to accept a cancel request (it only records it and returns)."""


class InstanceProcess(LaunchedProcess):
    """One service process bound to one session, driven over its Unix socket."""

    # -- Instance RPCs ----------------------------------------------------------------------

    async def _call_watched(
        self, call: asyncio.Future[Any], *, timeout: float | None = None
    ) -> Any:
        """Await an RPC while watching the process; raise InstanceLost if it dies first.

        With ``timeout``, a call still unanswered after that many seconds kills the process
        group (a hung service cannot be trusted with another task) and raises TaskTimeout.
        """
        assert self._exit_waiter is not None
        done, _ = await asyncio.wait(
            {call, self._exit_waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if not done:
            assert timeout is not None
            self._signal_group(signal.SIGKILL)
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.RpcError):
                await call
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._exit_waiter), 5)
            raise TaskTimeout(timeout)
        if call in done:
            try:
                return call.result()
            except grpc.RpcError as exc:
                code, details = rpc_status(exc)
                if code == grpc.StatusCode.RESOURCE_EXHAUSTED and not self.exited:
                    # A message over a size limit: the channel and the process are fine.
                    raise MessageRejected(details) from exc
                await self._reap_after_failure()
                raise InstanceLost(
                    f"{_rpc_text(exc)} ({describe_exit(self._returncode())})"
                ) from exc
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.RpcError):
            await call
        raise InstanceLost(describe_exit(self._returncode()))

    async def _reap_after_failure(self) -> None:
        # A transport error with a live process leaves it in an unknown state: it is lost.
        if not self.exited:
            self._signal_group(signal.SIGKILL)
        if self._exit_waiter is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._exit_waiter), 5)

    async def enter(self) -> None:
        """Call OnSessionEnter; raises BindError(12) on a non-zero return code."""
        assert self._stub is not None
        spec = self.spec
        app = spec.app
        ctx = shim_pb2.ApplicationContext(name=spec.app_name, shim=app.shim)
        for field in ("image", "command", "working_directory", "url", "installer"):
            if app.HasField(field):
                setattr(ctx, field, getattr(app, field))
        req = shim_pb2.SessionContext(session_id=spec.session_id, application=ctx)
        if spec.common_data is not None:
            req.common_data = spec.common_data
        try:
            result = await self._call_watched(asyncio.ensure_future(self._stub.OnSessionEnter(req)))
        except InstanceLost as exc:
            raise BindError(
                BIND_ENTER_FAILED, f"on_session_enter failed: {exc.exit_description}"
            ) from exc
        except MessageRejected as exc:
            raise BindError(
                BIND_ENTER_FAILED,
                f"on_session_enter failed: the session's common data is over a message size "
                f"limit ({exc.details})",
            ) from exc
        rc = int(getattr(result, "return_code", 0))
        if rc != 0:
            text = result.message if result.HasField("message") else f"return code {rc}"
            raise BindError(BIND_ENTER_FAILED, f"on_session_enter failed: {text}")
        self._entered = True

    async def invoke(
        self, task_id: int, data: bytes | None, *, timeout: float | None = None
    ) -> TaskOutcome:
        """Call OnTaskInvoke for one task; raises InstanceLost if the process dies meanwhile.

        ``timeout``: seconds the task may run; past it the process group is killed and
        TaskTimeout raised.
        """
        assert self._stub is not None
        req = shim_pb2.TaskContext(task_id=str(task_id), session_id=self.spec.session_id)
        if data is not None:
            req.input = data
        try:
            result = await self._call_watched(
                asyncio.ensure_future(self._stub.OnTaskInvoke(req)), timeout=timeout
            )
        except MessageRejected as exc:
            return TaskOutcome(-1, None, self._rejected(task_id, exc.details))
        output = result.output if result.HasField("output") else None
        limit = self.spec.max_message_bytes
        if output is not None and len(output) > output_budget(limit):
            # A service that does not check its reply itself (flamepy's).
            self._log.warning("reply over the message limit", task_id=task_id, size=len(output))
            return TaskOutcome(-1, None, reply_too_large(str(task_id), len(output), limit))
        message = result.message if result.HasField("message") else None
        return TaskOutcome(int(result.return_code), output, message)

    def _rejected(self, task_id: int, details: str) -> str:
        """The failure text of a task whose request or reply gRPC refused as too large."""
        self._log.warning("instance message over a size limit", task_id=task_id, details=details)
        return refused_as_too_large(str(task_id), details, self.spec.max_message_bytes)

    async def cancel(self, task_id: int) -> bool:
        """Ask the service to stop task ``task_id`` (our instance CancelTask); True when it
        will answer the task as cancelled, False when it cannot (see ``_wire.cancel``)."""
        if self._channel is None or self.exited:
            return False
        req = shim_pb2.TaskContext(task_id=str(task_id), session_id=self.spec.session_id)
        try:
            result = await instance_cancel_callable(self._channel)(req, timeout=_CANCEL_RPC_TIMEOUT)
        except grpc.RpcError as exc:
            # UNIMPLEMENTED: a service of flamepy's, which cannot stop a task.
            reason = rpc_status(exc)[1]
        else:
            if result.return_code == 0:
                return True
            reason = result.message if result.HasField("message") else str(result.return_code)
        self._log.info("service cannot cancel its task", task_id=task_id, reason=reason)
        return False

    async def stop(self) -> None:
        """OnSessionLeave (if entered and alive), then SIGTERM/SIGKILL the group, reap, clean."""
        if self._entered and self._stub is not None and not self.exited:
            leave = asyncio.ensure_future(
                self._stub.OnSessionLeave(types_pb2.EmptyRequest(), timeout=self.spec.stop_grace)
            )
            with contextlib.suppress(InstanceLost, Exception):
                await self._call_watched(leave)
        await self._shut_down()


def _rpc_text(exc: grpc.RpcError) -> str:
    details = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
    return f"instance channel failed: {details}"
