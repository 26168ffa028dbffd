"""The local stack as processes: Prefect server, a process worker, the intake. `fieldsync up`
runs it in the foreground; the end-to-end tests drive the same class, stopping and starting
parts (the Prefect server, to prove the outbox) on purpose."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from fieldsync import settings

ROOT = Path(__file__).resolve().parent.parent
POOL = "fieldsync-process"


class StackError(RuntimeError):
    pass


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


@dataclass
class Stack:
    home: Path
    prefect_port: int = 4200
    intake_port: int = 8400
    env_extra: Mapping[str, str] = field(default_factory=dict)
    worker_poll_seconds: float = 2.0
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    @property
    def intake_url(self) -> str:
        return f"http://127.0.0.1:{self.intake_port}"

    def env(self) -> dict[str, str]:
        # Only this stack's Prefect settings: an outer profile or test harness must not leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            {
                "PREFECT_HOME": str(self.home / "prefect"),
                "PREFECT_API_URL": self.api_url,
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "DO_NOT_TRACK": "1",
                "PREFECT_WORKER_QUERY_SECONDS": str(self.worker_poll_seconds),
                "PREFECT_WORKER_PREFETCH_SECONDS": "0",
                "FIELDSYNC_WORKDIR": str(ROOT),
                "DATABASE_URL": settings.database_url(),
                "FIELDSYNC_FEED_DIR": str(settings.feed_dir()),
            }
        )
        env.update(self.env_extra)
        return env

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the child
        self.procs[name] = subprocess.Popen(
            args, cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def start_prefect(self, timeout: float = 90) -> None:
        (self.home / "prefect").mkdir(parents=True, exist_ok=True)
        self._spawn("prefect-server", [_bin("prefect"), "server", "start", "--host",
                                       "127.0.0.1", "--port", str(self.prefect_port)])  # fmt: skip
        self._wait(f"{self.api_url}/health", "prefect-server", timeout)

    def deploy(self) -> None:
        self.cli(["work-pool", "create", POOL, "--type", "process", "--overwrite"])
        self.cli(["--no-prompt", "deploy", "--all"])

    def cli(self, args: list[str], timeout: float = 300) -> str:
        done = subprocess.run(
            [_bin("prefect"), *args], cwd=ROOT, env=self.env(), capture_output=True,
            text=True, timeout=timeout,
        )  # fmt: skip
        if done.returncode != 0:
            raise StackError(f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def start_worker(self, name: str = "worker") -> None:
        """More workers on the same pool share its runs: the scale-out path."""
        self._spawn(name, [_bin("prefect"), "worker", "start", "--pool", POOL, "--name",
                           f"{name}-{self.intake_port}", "--type", "process"])  # fmt: skip

    def start_intake(self, timeout: float = 30, workers: int = 1) -> None:
        self._spawn("intake", [_bin("fieldsync"), "intake", "serve", "--port",
                               str(self.intake_port), "--log-level", "warning",
                               "--workers", str(workers)])  # fmt: skip
        self._wait(f"{self.intake_url}/healthz", "intake", timeout)

    def stop(self, name: str, timeout: float = 20) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop_all(self) -> None:
        for name in [n for n in self.procs if n != "prefect-server"]:
            self.stop(name)
        self.stop("prefect-server")

    def _wait(self, url: str, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise StackError(f"{name} exited with {proc.returncode}; see {self.log(name)}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise StackError(
            f"{name} did not answer {url} within {timeout:.0f} s; see {self.log(name)}"
        )

    def log(self, name: str) -> Path:
        return self.home / f"{name}.log"


def run_stack(*, prefect_port: int, intake_port: int, deploy: bool) -> int:
    from fieldsync.store.db import migrate

    migrate()

    def stop_on_term(signum: int, frame: object) -> None:
        # The children run in sessions of their own (so Ctrl-C reaches only us, and we stop
        # them in order): a SIGTERM must unwind through `finally` too, or they outlive us.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on_term)
    stack = Stack(settings.home() / "stack", prefect_port, intake_port)
    stack.home.mkdir(parents=True, exist_ok=True)
    try:
        stack.start_prefect()
        print(f"Prefect UI:  http://127.0.0.1:{prefect_port}")
        if deploy:
            stack.deploy()
            print("deployments: applied from prefect.yaml")
        stack.start_worker()
        stack.start_intake()
        print(f"intake API:  {stack.intake_url}/docs")
        print(f"logs:        {stack.home}")
        print("Ctrl-C stops the stack.")
        while all(p.poll() is None for p in stack.procs.values()):
            time.sleep(1)
        dead = [n for n, p in stack.procs.items() if p.poll() is not None]
        print(f"stopped: {', '.join(dead)} exited; see its log in {stack.home}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop_all()
