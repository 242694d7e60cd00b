"""Drive the published flamepy 0.6.0's ``flamepy.runner.Runner`` against the runtime under test.

Run with the working directory set to a small project folder (Runner packages the current
folder) holding ``calc.py``; the environment points flamepy at the runtime. Arguments: the JSON
``{"app", "dependency", "broken_dependency"}``. Prints one line, REPLY_MARKER + the JSON of what
each call returned (and the session events of the broken runner). Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.getcwd())  # calc.py: pickled by reference, imported by the instances

import calc
import flamepy
from flamepy.runner import Runner
from scenario_json import REPLY_MARKER

WAIT = 90.0


def value(future: Any) -> Any:
    """The object an ObjectFuture stands for (its task awaited with a bound)."""
    future._future.result(timeout=WAIT)
    return future.get()


def main() -> None:
    args = json.loads(sys.argv[1])
    out: dict[str, Any] = {}
    with Runner(args["app"], dependencies=[args["dependency"]]) as runner:
        add = runner.service(calc.add)
        out["function"] = value(add(2, 3))
        first = add(1, 2)
        out["future_argument"] = value(add(first, 10))
        out["future_keyword"] = value(add(a=first, b=first))
        out["ref_argument"] = value(add(runner.put_object(100), 1))
        out["gathered"] = runner.get([add(i, i) for i in range(4)])
        counter_class = runner.service(calc.Counter)
        out["class"] = value(counter_class.increment(5))
        counter = runner.service(calc.Counter(10))
        out["instance"] = [value(counter.increment()), value(counter.increment(2))]
        out["module_file"] = value(runner.service(calc.module_file)())
        out["dependency"] = value(runner.service(calc.dependency_value)())
    with Runner(args["app"] + "-broken", dependencies=[args["broken_dependency"]]) as broken:
        service = broken.service(calc.add)
        future = service(1, 1)
        # As on Flame, a session whose instances cannot start keeps its tasks Pending: the
        # reason is in its events (1001 per failed start, then 1002).
        deadline = time.monotonic() + WAIT
        while True:
            events = flamepy.get_session(service._session.id).events or []
            if any(e.code == 1002 for e in events) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        out["broken"] = {
            "done": future._future.done(),
            "events": [{"code": e.code, "message": e.message} for e in events],
        }
    print(REPLY_MARKER + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # flamepy's watcher threads must not keep the process alive
