"""What a render task that raised instead of returning its rows is recorded as.

`process_asset` records everything about its asset as rows and does not raise for the asset (a bad
file, a failed download, a Blender job that failed or crashed, a clip the filters cannot read are
rows). So what `ray.get` raises is one of:

- `worker_lost` (transient): Ray lost the task's worker, node, raylet or an object it needed, past
  the task's retries (`WORKER_LOST`). Nothing about the asset: a later run may do it again.
- `out_of_memory` (transient): Ray's memory monitor killed the worker (a node short of memory), the
  same rule as a Blender job past its memory limit.
- `storage_error` (transient): the task raised an `OSError` (reading or writing the output store or
  the node's scratch disk: I/O, permissions, a missing bucket or output folder, the network under a
  store client; a missing *input* never arrives here, it is `unreadable` or `download_failed`), or
  an exception of a storage client library (`STORAGE_MODULES`: botocore's, s3fs's, ...). A store
  that is back, or credentials that are fixed, heal it.
- `error` (permanent): anything else the task raised, i.e. a bug in the pipeline's code (the rule
  the Blender job uses for the same thing). Its traceback is in the row's reasons. It is not retried
  by `--retry-errors`: the same code on the same asset fails the same way (`--retry-errors all`
  does, after a fix).
"""
from __future__ import annotations

import re
import traceback

TRACEBACK_CHARS = 2000  # the end of a traceback kept in an audit row (where the error was raised)
MESSAGE_CHARS = 500
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# exceptions of these packages (and their submodules) are storage errors, whatever their class
STORAGE_MODULES = ("botocore", "aiobotocore", "boto3", "s3fs", "gcsfs", "adlfs", "azure", "aiohttp", "fsspec",
                   "google.auth", "google.api_core", "google.cloud.storage")
# Ray's names for a lost worker, node, raylet, actor or object (ActorDiedError is a RayActorError,
# OwnerDiedError, ObjectFetchTimedOutError and ObjectReconstructionFailedError are ObjectLostErrors)
WORKER_LOST = ("WorkerCrashedError", "NodeDiedError", "LocalRayletDiedError", "RayActorError", "ObjectLostError")


def classify(exc: BaseException) -> tuple[str, list[str]]:
    """(rule, reasons) for what `ray.get` of a render task raised. Reasons: a one-line
    `Type: message`, then, for `storage_error` and `error`, the end of the task's traceback."""
    import ray.exceptions as rex

    if isinstance(exc, rex.RayTaskError):
        cause = exc.cause
        lost = _ray_rule(cause) if isinstance(cause, rex.RayError) else None
        if lost:  # e.g. an argument of the task was lost with its node
            return lost, [str(cause)[-MESSAGE_CHARS:]]
        rule = "storage_error" if is_storage_error(cause) else "error"
        # what ray.get raises is a subclass of both RayTaskError and the cause's class, whose text is
        # the task's traceback (Ray internals left out), headed by the worker's pid and ip in colour
        text = getattr(exc, "traceback_str", None) or ANSI.sub("", str(exc))
        return rule, [_message(cause), trim(text)]
    rule = _ray_rule(exc) if isinstance(exc, rex.RayError) else None
    if rule:
        return rule, [str(exc)[-MESSAGE_CHARS:]]
    return ("storage_error" if is_storage_error(exc) else "error"), [
        _message(exc), trim("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))]


def _ray_rule(exc) -> str | None:
    import ray.exceptions as rex

    if isinstance(exc, rex.OutOfMemoryError):
        return "out_of_memory"
    lost = tuple(c for c in (getattr(rex, n, None) for n in WORKER_LOST) if c is not None)
    return "worker_lost" if isinstance(exc, lost) else None


def is_storage_error(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return True
    return any(c.__module__ == m or c.__module__.startswith(m + ".") for c in type(exc).__mro__
               for m in STORAGE_MODULES)


def _message(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS] + " ..."


def trim(text: str, limit: int = TRACEBACK_CHARS) -> str:
    """The last `limit` characters of a traceback, from a line start."""
    text = text.strip()
    if len(text) <= limit:
        return text
    tail = text[-limit:]
    return "...\n" + (tail.split("\n", 1)[1] if "\n" in tail else tail)
