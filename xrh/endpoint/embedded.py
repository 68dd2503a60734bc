"""The embedded two-region endpoint: one patched moto server process per region.

Used three ways: ``xrh endpoint`` (start, print the URLs, wait for Ctrl-C), the locustfile, and the
tests, all through :class:`EmbeddedEndpoint`, a context manager that leaves no process behind:
servers run in their own session (a terminal's Ctrl-C reaches only the harness, which stops them
in order) and ask the kernel to terminate them if the harness dies.

While it runs, ``endpoints.json`` in the run directory and in the runs folder says where the
servers listen, so that other processes of the same run (``xrh provision`` in another terminal,
the replicator, verify) find them with :func:`resolve_config`.

Injected faults (:mod:`xrh.faults`): ``faults`` and ``seed`` are given to both servers when they
start (a restarted region gets the endpoint's current faults), and :meth:`set_faults` changes
them at runtime through each server's admin path, ``POST /_xrh/faults``. Each injected fault is
appended to ``faults.jsonl`` in ``run_dir`` (if any) or to the log ``set_faults`` names.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from xrh.config import EndpointMode, HarnessConfig, Side
from xrh.errors import EndpointError, UsageError
from xrh.faults import FAULTS_FILE, parse_faults
from xrh.processes import stop_process
from xrh.runs import ENDPOINTS_FILE, LATEST

STARTUP_TIMEOUT_S = 60.0
ADMIN_TIMEOUT_S = 10.0
FAULTS_ADMIN_PATH = "/_xrh/faults"  # xrh.endpoint.fault_injection.ADMIN_PATH, not imported here


@dataclass(slots=True)
class _Region:
    side: Side
    region: str
    process: subprocess.Popen[str] | None = None
    url: str | None = None
    port: int = 0
    log: IO[str] | None = None


class EmbeddedEndpoint:
    """Start both regions' servers on enter, stop them on exit.

    ``config`` is the caller's configuration; :attr:`config` returns it with the URLs resolved.
    ``run_dir`` (optional) receives ``endpoints.json``, the servers' logs and ``faults.jsonl``.
    ``faults`` (a spec, :mod:`xrh.faults`) and ``seed`` are injected from the start; a bad spec
    raises UsageError here, before any server starts.
    """

    def __init__(
        self,
        config: HarnessConfig,
        *,
        run_dir: Path | None = None,
        startup_timeout: float = STARTUP_TIMEOUT_S,
        patched: bool = True,
        faults: str | None = None,
        seed: int | None = None,
    ) -> None:
        plan = parse_faults(faults, source="faults")
        self._faults = plan.spec if plan else None
        self._seed = seed
        self._faults_log: Path | None = run_dir / FAULTS_FILE if run_dir else None
        self._base = config
        self._run_dir = run_dir
        self._startup_timeout = startup_timeout
        self._patched = patched  # False only to measure plain moto in benchmarks
        self._regions = {side: _Region(side, config.region(side)) for side in Side}

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> EmbeddedEndpoint:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        try:
            for side in Side:
                self.start_region(side)
        except BaseException:
            self.stop()
            raise
        self._write_endpoints_files()

    def stop(self) -> None:
        """Stop both servers (SIGTERM, then SIGKILL) and remove the endpoints files."""
        for side in Side:
            self.stop_region(side)
        self._remove_endpoints_files()

    @property
    def config(self) -> HarnessConfig:
        url_a, url_b = self.url(Side.A), self.url(Side.B)
        return self._base.with_endpoints(url_a, url_b)

    def url(self, side: Side) -> str:
        url = self._regions[side].url
        if url is None:
            raise EndpointError(
                f"region {side.value.upper()} of the embedded endpoint is not started"
            )
        return url

    def url_of(self, side: str) -> str:
        """``url`` by the letter a user types: ``'a'`` or ``'b'``."""
        return self.url(Side(side.lower()))

    def alive(self) -> bool:
        """True while both servers run (a paused one counts as running)."""
        return all(
            r.process is not None and r.process.poll() is None for r in self._regions.values()
        )

    def pid(self, side: Side) -> int | None:
        process = self._regions[side].process
        return process.pid if process is not None else None

    # ------------------------------------------------------------------ one region

    def start_region(self, side: Side) -> None:
        """Start (or restart, on the same port) one region's server; its state starts empty."""
        region = self._regions[side]
        if region.process is not None and region.process.poll() is None:
            return
        log_path = self._run_dir / f"endpoint-{side.value}.log" if self._run_dir else None
        region.log = open(log_path, "a") if log_path else None  # noqa: SIM115 - closed in stop_region
        command = [
            sys.executable,
            "-m",
            "xrh.endpoint.server",
            "--region",
            region.region,
            "--port",
            str(region.port),
            "--parent-pid",
            str(os.getpid()),
            "--side",
            side.value,
        ] + ([] if self._patched else ["--unpatched"])
        if self._faults:
            command += ["--faults", self._faults]
        if self._seed is not None:
            command += ["--seed", str(self._seed)]
        if self._faults_log is not None:
            command += ["--faults-log", str(self._faults_log)]
        region.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=region.log if region.log else subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        info = self._read_ready_line(region)
        region.url, region.port = info["url"], int(info["url"].rsplit(":", 1)[1])
        self._wait_until_answering(region)

    def stop_region(self, side: Side) -> None:
        """Stop one region's server, as a regional outage would; its data is gone."""
        region = self._regions[side]
        process, region.process = region.process, None
        if process is not None:
            stop_process(process)
            if process.stdout is not None:
                process.stdout.close()
        if region.log is not None:
            region.log.close()
            region.log = None

    def pause_region(self, side: Side) -> None:
        """Freeze one region (SIGSTOP): requests hang until timeouts, like a network partition."""
        self._signal(side, signal.SIGSTOP)

    def resume_region(self, side: Side) -> None:
        self._signal(side, signal.SIGCONT)

    def _signal(self, side: Side, signum: int) -> None:
        process = self._regions[side].process
        if process is None or process.poll() is not None:
            raise EndpointError(
                f"region {side.value.upper()} of the embedded endpoint is not running"
            )
        os.kill(process.pid, signum)

    # ------------------------------------------------------------------ faults

    @property
    def faults(self) -> str | None:
        """The fault spec in force (normalised), None when there is none."""
        return self._faults

    @property
    def faults_log(self) -> Path | None:
        return self._faults_log

    def set_faults(
        self, spec: str | None, *, seed: int | None = None, log: Path | None = None
    ) -> None:
        """Inject ``spec`` from now on in both running regions (None: no faults).

        ``seed`` None keeps the endpoint's seed; ``log`` None keeps the current log file. The
        decisions start afresh from the seed. A stopped region gets these faults when it is
        started again. Raises UsageError for a bad spec, EndpointError if a running server
        does not take it (a paused region, for example, times out).
        """
        plan = parse_faults(spec, source="faults")
        self._faults = plan.spec if plan else None
        if seed is not None:
            self._seed = seed
        if log is not None:
            self._faults_log = Path(log)
        payload = {
            "spec": self._faults,
            "seed": self._seed,
            "log": str(self._faults_log) if self._faults_log is not None else None,
        }
        for side, region in self._regions.items():
            if region.process is None or region.process.poll() is not None or not region.url:
                continue
            self._post_faults(side, region.url, payload)

    def fault_status(self, side: Side) -> dict[str, Any]:
        """What one running server says about its faults (spec, seed, log, counts)."""
        url = self.url(side) + FAULTS_ADMIN_PATH
        try:
            with urllib.request.urlopen(url, timeout=ADMIN_TIMEOUT_S) as response:  # noqa: S310
                return json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise EndpointError(
                f"region {side.value.upper()} did not report its faults: {exc}"
            ) from None

    def _post_faults(self, side: Side, url: str, payload: dict[str, Any]) -> None:
        request = urllib.request.Request(  # noqa: S310 - our own server on 127.0.0.1
            url + FAULTS_ADMIN_PATH,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=ADMIN_TIMEOUT_S) as response:  # noqa: S310
                response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            with contextlib.suppress(ValueError, AttributeError):
                detail = json.loads(detail).get("error", detail)
            raise EndpointError(
                f"region {side.value.upper()} refused the faults {payload['spec']!r}: {detail}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise EndpointError(
                f"region {side.value.upper()} did not take the faults {payload['spec']!r}: {exc}"
            ) from None

    # ------------------------------------------------------------------ helpers

    def _read_ready_line(self, region: _Region) -> dict[str, Any]:
        assert region.process is not None and region.process.stdout is not None
        deadline = time.monotonic() + self._startup_timeout
        with selectors.DefaultSelector() as selector:
            selector.register(region.process.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if selector.select(timeout=0.2):
                    line = region.process.stdout.readline()
                    if line:
                        try:
                            return json.loads(line)
                        except json.JSONDecodeError:
                            continue
                if region.process.poll() is not None:
                    break
        code = region.process.poll()
        self.stop_region(region.side)
        raise EndpointError(
            f"embedded endpoint for {region.region} did not start "
            f"({'exited with ' + str(code) if code is not None else 'timed out'}; "
            f"see endpoint-{region.side.value}.log in the run directory)"
        )

    def _wait_until_answering(self, region: _Region) -> None:
        deadline = time.monotonic() + self._startup_timeout
        delay = 0.05
        while True:
            if answers(region.url or ""):
                return
            if time.monotonic() > deadline:
                self.stop_region(region.side)
                raise EndpointError(
                    f"embedded endpoint for {region.region} at {region.url} does not answer"
                )
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _endpoints_payload(self) -> dict[str, Any]:
        return {
            "owner_pid": os.getpid(),
            "regions": {
                side.value: {"region": r.region, "url": r.url, "pid": self.pid(side)}
                for side, r in self._regions.items()
            },
        }

    def _endpoint_file_paths(self) -> list[Path]:
        paths = [self._base.runs_dir / ENDPOINTS_FILE]
        if self._run_dir is not None:
            paths.append(self._run_dir / ENDPOINTS_FILE)
        return paths

    def _write_endpoints_files(self) -> None:
        payload = json.dumps(self._endpoints_payload(), indent=2) + "\n"
        for path in self._endpoint_file_paths():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(payload)
            os.replace(tmp, path)

    def _remove_endpoints_files(self) -> None:
        for path in self._endpoint_file_paths():
            try:
                if json.loads(path.read_text()).get("owner_pid") == os.getpid():
                    path.unlink()
            except (OSError, ValueError):
                pass


def answers(url: str, timeout: float = 1.0) -> bool:
    """True when a moto server at ``url`` answers its dashboard API."""
    try:
        with urllib.request.urlopen(f"{url}/moto-api/", timeout=timeout) as response:  # noqa: S310
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def resolve_config(config: HarnessConfig, run_dir: Path | None = None) -> HarnessConfig:
    """Point an embedded-mode configuration at the running embedded endpoint.

    Looks for ``endpoints.json`` in ``run_dir`` (if given), then in ``runs/latest`` and in the
    runs folder, and checks that the servers answer. Other modes are returned unchanged.
    """
    if config.endpoint_mode is not EndpointMode.EMBEDDED or config.endpoint_url_a:
        return config
    candidates = []
    if run_dir is not None:
        candidates.append(run_dir / ENDPOINTS_FILE)
    candidates += [config.runs_dir / LATEST / ENDPOINTS_FILE, config.runs_dir / ENDPOINTS_FILE]
    for path in candidates:
        try:
            regions = json.loads(path.read_text())["regions"]
            url_a, url_b = regions["a"]["url"], regions["b"]["url"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if answers(url_a) and answers(url_b):
            return config.with_endpoints(url_a, url_b)
    looked = ", ".join(str(p) for p in candidates)
    raise UsageError(
        f"no embedded endpoint is running (looked in {looked}): start one with `xrh endpoint`, "
        "or pass --endpoint-url-a/--endpoint-url-b, --endpoint-url or --endpoint aws"
    )
