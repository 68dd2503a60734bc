"""One embedded region: a moto server process on 127.0.0.1 with :mod:`moto_patches` applied.

Started by :class:`xrh.endpoint.embedded.EmbeddedEndpoint` as ``python -m xrh.endpoint.server``.
It prints one JSON line (``{"url": ..., "pid": ..., "region": ...}``) once it listens, serves until
SIGTERM or SIGINT, and exits 0. A process per region keeps the regions separate failure domains:
one can be stopped, paused or restarted alone.

moto's application is wrapped in :class:`~xrh.endpoint.fault_injection.FaultInjector`, which
injects the faults of ``--faults`` (:mod:`xrh.faults`) for this server's ``--side`` and takes new
ones at runtime on ``POST /_xrh/faults``. A bad ``--faults`` exits 3 with one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading


def _parent_death_signal() -> None:
    """Ask Linux to SIGTERM this process if its parent dies, so no server outlives the harness."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xrh.endpoint.server")
    parser.add_argument("--region", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument(
        "--unpatched", action="store_true", help="plain moto, for comparison benchmarks"
    )
    parser.add_argument("--side", choices=["a", "b"], default="a", help="which region this is")
    parser.add_argument("--faults", default=None, help="fault spec (xrh.faults); none by default")
    parser.add_argument("--seed", type=int, default=None, help="seed of the fault decisions")
    parser.add_argument("--faults-log", default=None, help="faults.jsonl to append to")
    args = parser.parse_args(argv)

    _parent_death_signal()
    if args.parent_pid and os.getppid() != args.parent_pid:
        return 1  # the parent died before prctl took effect

    from xrh.endpoint import moto_patches
    from xrh.endpoint.fault_injection import FaultInjector
    from xrh.errors import EXIT_USAGE, UsageError

    if not args.unpatched:
        moto_patches.apply()

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class QuietHandler(MotoRequestHandler):
        def log_request(self, *_args: object, **_kwargs: object) -> None:
            """One log line per request would cost more than the request."""

    app = FaultInjector(
        DomainDispatcherApplication(create_backend_app), side=args.side, region=args.region
    )
    try:
        app.configure(args.faults, seed=args.seed, log=args.faults_log)
    except (UsageError, OSError) as exc:
        print(f"xrh.endpoint.server: {exc}", file=sys.stderr)
        return EXIT_USAGE
    server = make_server("127.0.0.1", args.port, app, threaded=True, request_handler=QuietHandler)
    server.daemon_threads = True

    def stop(_signum: int, _frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    url = f"http://127.0.0.1:{server.server_port}"
    print(json.dumps({"url": url, "pid": os.getpid(), "region": args.region}), flush=True)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
