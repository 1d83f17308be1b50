"""Issue 15: ``conveyor serve`` beside Seldon MLServer and a plain Flask app, one load generator.

The complaints model without text (one-hot of eight categorical columns, ZIP buckets, z-score
and min-max of four numbers), a logistic regression and a LightGBM, trained on 100,000 rows:

- conveyor: the bundles ``train_bench`` makes (bench/out/train/root-latency-100000/, from its
  pipeline's cache when there), served by ``conveyor serve``: TF Serving's REST predict (a row
  in ``instances``) and the Open Inference Protocol's infer (one tensor a column).
- MLServer 1.7.1 with its scikit-learn runtime, in its own virtualenv (bench/out/serve/
  venv-mlserver, made on first use; ``uvloop<0.22``: MLServer 1.7.1's workers die under uvloop
  0.23), serving the same work as a scikit-learn Pipeline on the same raw columns
  (``anchors/complaints_sklearn.py``), fitted there on the same rows; its defaults otherwise
  (inference in one worker process).
- Flask: ``anchors/flask_app.py``, the book's chapter 8 server, on the same Pipeline, in the
  same virtualenv, on Flask's own threaded server.

Each server is a process of its own, started and stopped here; the load generator is another
(``--child load``: asyncio, uvloop when installed, keep-alive connections, one raw complaint row
per request cycling over ``REQUEST_ROWS`` rows without a missing value). At each concurrency
(1, 16, 64), ``--warmup`` seconds unclocked, then ``--duration`` seconds: requests answered per
second, p50 and p99 latency (send to the last body byte), errors. The server's CPU time (its
process tree, from /proc) per request and the client's share of a core are reported, so one
can see which side was the bottleneck on a 2-core machine. Ready time: from the process start
to the first 200 of the server's readiness route (Flask has none: the first answered predict);
``conveyor serve`` is started ``READY_STARTS`` times, the median counts.

    python bench/serve_bench.py [--duration 8] [--warmup 2] [--sides conveyor mlserver flask] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import importlib.metadata
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import venv
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
WORK = BENCH / "out" / "serve"
VENV = WORK / "venv-mlserver"
OUT = BENCH / "out" / "serve.json"
ANCHORS = BENCH / "anchors"
SPEC = ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop<0.22", "flask>=3.0", "lightgbm>=4.0")
TRAIN_ROWS = 100_000  # train_bench's LATENCY_ROWS: its cached bundles are reused
REQUEST_ROWS = 256
CONCURRENCY = (1, 16, 64)
READY_STARTS = 5
MODEL = "complaints"
LABEL = "consumer_disputed"
FEATURES = {
    **dict.fromkeys(
        ("product", "sub_product", "issue", "sub_issue", "company", "state", "company_response", "timely_response"),
        "BYTES",
    ),
    "zip_code": "BYTES",
    **dict.fromkeys(("amount", "score", "n_calls", "age_days"), "FP64"),
}

# The goals, and its measured anchors (this machine, the same kind of load).
GOAL_RATIO, GOAL_P50_MS, GOAL_READY_S = 10.0, 2.0, 1.0


@dataclass(frozen=True)
class Side:
    """One server serving one model over one protocol."""

    server: str  # conveyor | mlserver | flask
    model: str  # logistic | lightgbm
    protocol: str  # v1 (TF Serving's predict) | v2 (Open Inference Protocol) | book (Flask's /classify)
    workers: int = 1

    @property
    def key(self) -> str:
        workers = f" x{self.workers}" if self.workers > 1 else ""
        return f"{self.server}{workers} {self.model} {self.protocol}"

    @property
    def path(self) -> str:
        if self.server == "flask":
            return "/classify"
        return f"/v1/models/{MODEL}:predict" if self.protocol == "v1" else f"/v2/models/{MODEL}/infer"


SIDES = (
    Side("conveyor", "logistic", "v1"),
    Side("conveyor", "logistic", "v2"),
    Side("conveyor", "lightgbm", "v1"),
    Side("mlserver", "logistic", "v2"),
    Side("mlserver", "lightgbm", "v2"),
    Side("flask", "logistic", "book"),
    Side("flask", "lightgbm", "book"),
)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the models and the requests ----------------------------------------------------------


def conveyor_bundles() -> dict[str, Path]:
    """The no-text bundles of train_bench's latency pipeline (made once, then from its cache)."""
    import train_bench

    pipeline = train_bench.bench_pipeline(TRAIN_ROWS, (False,), train_bench.MODELS, latency=True)
    run = train_bench._succeeded(pipeline.run(), "the conveyor bundles")
    return {
        m: Path(run.executions[train_bench.trainer_id(m, False)].outputs["model"][0].uri)
        for m in ("logistic", "lightgbm")
    }


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv() -> Path:
    """MLServer's virtualenv, once; a marker naming SPEC tells a finished install from a broken one."""
    marker = VENV / "conveyor-installed"
    if marker.exists() and marker.read_text() == " ".join(SPEC):
        return venv_python()
    say(f"mlserver anchor: installing {' '.join(SPEC)} into {VENV.relative_to(ROOT)} ...")
    venv.create(VENV, with_pip=True, clear=True)
    python = str(venv_python())
    log = WORK / "install.log"
    with log.open("w") as out:
        for command in (
            [python, "-m", "pip", "install", "uv"],
            [python, "-m", "uv", "pip", "install", "--python", python, *SPEC],
        ):
            if subprocess.run(command, stdin=subprocess.DEVNULL, stdout=out, stderr=out).returncode != 0:
                msg = f"could not install {' '.join(SPEC)} into {VENV.relative_to(ROOT)}; see {log.relative_to(ROOT)}."
                raise RuntimeError(msg)
    marker.write_text(" ".join(SPEC))
    return venv_python()


def sklearn_models(csv: Path) -> dict[str, Path]:
    """The scikit-learn Pipelines MLServer and Flask serve, fitted in MLServer's virtualenv."""
    python = ensure_venv()
    models = {}
    for model in ("logistic", "lightgbm"):
        path = WORK / f"sklearn-{model}-{TRAIN_ROWS}" / "model.joblib"
        if not path.exists():
            say(f"fitting the scikit-learn {model} pipeline on {TRAIN_ROWS:,} rows ...")
            path.parent.mkdir(parents=True, exist_ok=True)
            script = ANCHORS / "complaints_sklearn.py"
            subprocess.run([str(python), str(script), str(csv), str(TRAIN_ROWS), model, str(path)], check=True)
        settings = {
            "name": MODEL,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib", "version": "1"},
        }
        (path.parent / "model-settings.json").write_text(json.dumps(settings, indent=1))
        models[model] = path
    return models


def request_rows(parquet: Path) -> list[dict[str, Any]]:
    """The first ``REQUEST_ROWS`` rows with every feature present, as a client sends them (no label)."""
    import pyarrow.parquet as pq

    rows = pq.read_table(parquet, columns=list(FEATURES)).slice(0, 4 * REQUEST_ROWS).to_pylist()
    return [r for r in rows if None not in r.values()][:REQUEST_ROWS]


def bodies(side: Side, rows: list[dict[str, Any]]) -> list[str]:
    """One request body a row, in the side's protocol."""
    if side.protocol == "v1":
        return [json.dumps({"instances": [row]}) for row in rows]
    if side.protocol == "book":
        return [json.dumps(row) for row in rows]
    out = []
    for row in rows:
        inputs = [{"name": n, "shape": [1], "datatype": t, "data": [row[n]]} for n, t in FEATURES.items()]
        body: dict[str, Any] = {"inputs": inputs}
        if side.server == "mlserver":  # its pandas codec makes the Pipeline's DataFrame; BYTES decoded as text
            for tensor in inputs:
                if tensor["datatype"] == "BYTES":
                    tensor["parameters"] = {"content_type": "str"}
            body |= {"parameters": {"content_type": "pd"}, "outputs": [{"name": "predict_proba"}]}
        out.append(json.dumps(body))
    return out


def probability(side: Side, answer: dict[str, Any]) -> float:
    """The probability of a dispute in a side's answer to one row."""
    if side.server == "flask":
        return float(answer["score"])
    if side.protocol == "v1":
        return float(answer["predictions"][0]["probability"])
    outputs = {o["name"]: o for o in answer["outputs"]}
    if side.server == "mlserver":
        return float(outputs["predict_proba"]["data"][1])
    return float(outputs["probability"]["data"][0])


# --- the servers ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port: int, path: str, body: str, timeout: float = 10.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST" if body else "GET", path, body=body or None, headers={"Content-Type": "application/json"})
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


class Server:
    """A server process of one side, in its own session so that its workers stop with it."""

    def __init__(self, side: Side, model: Path, first_body: str) -> None:
        self.side, self.port = side, free_port()
        self.log = WORK / f"{side.key.replace(' ', '-')}.log"
        command, env, probe = self._command(model)
        self.probe = probe if probe is not None else (side.path, first_body)
        self.started = time.perf_counter()
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, **env},
                start_new_session=True,
            )
        self.ready_s = self._wait_ready()

    def _command(self, model: Path) -> tuple[list[str], dict[str, str], tuple[str, str] | None]:
        if self.side.server == "conveyor":
            command = [sys.executable, "-m", "conveyor", "serve", "--model-dir", str(model), "--model-name", MODEL]
            command += ["--rest-port", str(self.port), "--grpc-port", "0", "--poll-seconds", "0"]
            if self.side.workers > 1:
                command += ["--workers", str(self.side.workers)]
            return command, {}, ("/v2/health/ready", "")
        anchors = {"PYTHONPATH": str(ANCHORS)}  # the Pipeline's zip3 is found there
        if self.side.server == "flask":
            return [str(venv_python()), str(ANCHORS / "flask_app.py"), str(model), str(self.port)], anchors, None
        settings = {"host": "127.0.0.1", "http_port": self.port, "grpc_port": free_port(), "metrics_port": free_port()}
        (model.parent / "settings.json").write_text(json.dumps(settings))
        return [str(VENV / "bin" / "mlserver"), "start", str(model.parent)], anchors, (f"/v2/models/{MODEL}/ready", "")

    def _wait_ready(self, timeout: float = 120.0) -> float:
        while time.perf_counter() - self.started < timeout:
            if self.proc.poll() is not None:
                msg = f"{self.side.key} exited with {self.proc.returncode} while starting; see {self.log.relative_to(ROOT)}."
                raise RuntimeError(msg)
            try:
                if post(self.port, *self.probe, timeout=timeout)[0] == 200:
                    return time.perf_counter() - self.started
            except OSError:
                pass
            time.sleep(0.005)
        msg = f"{self.side.key} was not ready after {timeout:.0f} s; see {self.log.relative_to(ROOT)}."
        raise RuntimeError(msg)

    def cpu_s(self) -> float:
        """CPU seconds of the server's process tree so far (children that exited are lost, none do here)."""
        return tree_cpu_s(self.proc.pid)

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def tree_cpu_s(root: int) -> float:
    """User + system CPU seconds of ``root`` and its descendants, from /proc."""
    parents, cpu = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    tree: set[int] = {root}
    while grown := {p for p, parent in parents.items() if parent in tree} - tree:
        tree |= grown
    return sum(cpu.get(pid, 0.0) for pid in tree)


# --- the load generator (its own process) -----------------------------------------------------


async def _connection(
    host: str, port: int, requests: list[bytes], start: int, clock: dict[str, float], out: dict[str, Any]
) -> None:
    """One keep-alive connection sending requests back to back until the clock says stop."""
    reader, writer = await asyncio.open_connection(host, port)
    i = start
    while (sent := time.perf_counter()) < clock["stop"]:
        writer.write(requests[i % len(requests)])
        i += 1
        head = await reader.readuntil(b"\r\n\r\n")
        lower = head.lower()
        at = lower.find(b"content-length:")
        if at < 0:
            msg = f"an answer without Content-Length: {head[:200]!r}"
            raise RuntimeError(msg)
        await reader.readexactly(int(lower[at + 15 : lower.find(b"\r\n", at)]))
        done = time.perf_counter()
        out["answered"] += 1
        if sent >= clock["measure"] and done <= clock["stop"]:
            out["latencies"].append(done - sent)
            if head[9:12] != b"200":
                out["errors"] += 1
        if b"connection: close" in lower:
            writer.close()
            reader, writer = await asyncio.open_connection(host, port)
    writer.close()


def load_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Keep ``concurrency`` requests in flight for warm-up + duration; the measured window's figures."""
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    host, port = "127.0.0.1", spec["port"]
    requests = []
    for body in json.loads(Path(spec["bodies"]).read_text()):
        data = body.encode()
        head = f"POST {spec['path']} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        requests.append(head.encode() + data)
    out: dict[str, Any] = {"answered": 0, "errors": 0, "latencies": []}

    async def main() -> None:
        now = time.perf_counter()
        clock = {"measure": now + spec["warmup"], "stop": now + spec["warmup"] + spec["duration"]}
        step = len(requests) // spec["concurrency"] or 1
        await asyncio.gather(
            *(_connection(host, port, requests, c * step, clock, out) for c in range(spec["concurrency"]))
        )

    cpu = time.process_time()
    wall = time.perf_counter()
    runner(main())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    latencies = sorted(out["latencies"])
    n = len(latencies)
    return {
        "requests": n,
        "answered": out["answered"],
        "errors": out["errors"],
        "rps": n / spec["duration"],
        "p50_ms": 1e3 * latencies[n // 2] if n else None,
        "p99_ms": 1e3 * latencies[min(n - 1, int(0.99 * n))] if n else None,
        "max_ms": 1e3 * latencies[-1] if n else None,
        "client_cpu": cpu / wall,
    }


# --- the run --------------------------------------------------------------------------------


def measure_side(side: Side, model: Path, rows: list[dict[str, Any]], warmup: float, duration: float) -> dict[str, Any]:
    texts = bodies(side, rows)
    path = WORK / f"bodies-{side.server}-{side.protocol}.json"
    path.write_text(json.dumps(texts))
    server = Server(side, model, texts[0])
    say(f"{side.key}: ready in {server.ready_s:.2f} s")
    try:
        status, answer = post(server.port, side.path, texts[0])
        if status != 200:
            msg = f"{side.key} answered {status}: {answer[:300]!r}"
            raise RuntimeError(msg)
        points = {}
        for concurrency in CONCURRENCY:
            cpu = server.cpu_s()
            spec = {"port": server.port, "path": side.path, "bodies": str(path), "concurrency": concurrency}
            spec |= {"warmup": warmup, "duration": duration}
            done = subprocess.run(
                [sys.executable, __file__, "--child", "load", "--spec", json.dumps(spec)],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                msg = (
                    f"the load generator failed on {side.key} at {concurrency}: {done.stderr.strip().splitlines()[-1:]}"
                )
                raise RuntimeError(msg)
            point = json.loads(done.stdout.strip().splitlines()[-1])
            point["server_cpu_ms"] = 1e3 * (server.cpu_s() - cpu) / max(point["answered"], 1)
            points[concurrency] = point
            say(
                f"  concurrency {concurrency:3}: {point['rps']:8.0f} req/s  p50 {point['p50_ms']:7.2f} ms  "
                f"p99 {point['p99_ms']:7.2f} ms  errors {point['errors']}  server CPU {point['server_cpu_ms']:.2f} ms/req  "
                f"client {point['client_cpu']:.0%} of a core"
            )
        return {"ready_s": server.ready_s, "probability": probability(side, json.loads(answer)), "points": points}
    finally:
        server.stop()


def ready_times(bundle: Path, rows: list[dict[str, Any]]) -> list[float]:
    """``conveyor serve``'s start to ready, ``READY_STARTS`` times."""
    side = Side("conveyor", "logistic", "v1")
    times = []
    for _ in range(READY_STARTS):
        server = Server(side, bundle, bodies(side, rows)[0])
        times.append(server.ready_s)
        server.stop()
    return times


def run(sides: list[Side], warmup: float, duration: float) -> dict[str, Any]:
    from stats_bench import ensure_data, machine

    load = [os.getloadavg()[0]]
    WORK.mkdir(parents=True, exist_ok=True)
    csv, parquet = ensure_data(TRAIN_ROWS)
    models: dict[str, dict[str, Path]] = {}
    if any(s.server == "conveyor" for s in sides):
        models["conveyor"] = conveyor_bundles()
    if any(s.server != "conveyor" for s in sides):
        models["mlserver"] = models["flask"] = sklearn_models(csv)
    rows = request_rows(parquet)
    results = {}
    for side in sides:
        results[side.key] = {
            "side": side.__dict__,
            **measure_side(side, models[side.server][side.model], rows, warmup, duration),
        }
        load.append(os.getloadavg()[0])
    ready = ready_times(models["conveyor"]["logistic"], rows) if "conveyor" in models else []
    load.append(os.getloadavg()[0])
    versions = machine()
    versions["versions"].update({n: importlib.metadata.version(n) for n in ("uvicorn", "starlette")})
    for optional in ("uvloop", "httptools", "orjson"):
        try:
            versions["versions"][optional] = importlib.metadata.version(optional)
        except importlib.metadata.PackageNotFoundError:
            versions["versions"][optional] = None
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": versions,
        "load_average_1min": {"min": round(min(load), 2), "max": round(max(load), 2)},
        "warmup_s": warmup,
        "duration_s": duration,
        "request_rows": len(rows),
        "results": results,
        "conveyor_ready_s": ready,
        "goals": goals(results, ready),
    }


def _point(results: dict[str, Any], key: str, concurrency: int) -> dict[str, Any] | None:
    return results.get(key, {}).get("points", {}).get(concurrency)


def goals(results: dict[str, Any], ready: list[float]) -> list[dict[str, Any]]:
    out = []
    top = max(CONCURRENCY)
    for model in ("logistic", "lightgbm"):
        ours = _point(results, f"conveyor {model} v1", top)
        for anchor in (f"mlserver {model} v2", f"flask {model} book"):
            theirs = _point(results, anchor, top)
            if ours is None or theirs is None:
                continue
            ratio = ours["rps"] / theirs["rps"]
            lower_p99 = ours["p99_ms"] < theirs["p99_ms"]
            out.append(
                {
                    "goal": f"{GOAL_RATIO:g}x {anchor.split()[0]}'s throughput at {top}, lower p99 ({model})",
                    "measured": f"{ratio:.1f}x; p99 {ours['p99_ms']:.1f} vs {theirs['p99_ms']:.1f} ms",
                    "met": ratio >= GOAL_RATIO and lower_p99,
                }
            )
    one = _point(results, "conveyor logistic v1", 1)
    if one is not None:
        out.append(
            {
                "goal": f"one request p50 < {GOAL_P50_MS:g} ms (logistic, concurrency 1)",
                "measured": f"{one['p50_ms']:.2f} ms",
                "met": one["p50_ms"] < GOAL_P50_MS,
            }
        )
    if ready:
        median = statistics.median(ready)
        out.append(
            {
                "goal": f"conveyor serve ready < {GOAL_READY_S:g} s",
                "measured": f"{median:.2f} s (median of {len(ready)})",
                "met": median < GOAL_READY_S,
            }
        )
    return out


def report(result: dict[str, Any]) -> str:
    la = result["load_average_1min"]
    lines = [
        f"{result['warmup_s']:g} s warm-up + {result['duration_s']:g} s a point; {result['request_rows']} distinct rows; "
        f"load average {la['min']:.1f}-{la['max']:.1f}",
        "",
        f"{'server, model, protocol':28} {'ready s':>7} {'conc':>5} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'server CPU ms/req':>17} {'client CPU':>10}",
    ]
    for key, r in result["results"].items():
        for concurrency, p in r["points"].items():
            lines.append(
                f"{key:28} {r['ready_s']:7.2f} {concurrency:>5} {p['rps']:8.0f} {p['p50_ms']:8.2f} {p['p99_ms']:8.2f} "
                f"{p['errors']:6} {p['server_cpu_ms']:17.2f} {p['client_cpu']:10.0%}"
            )
    lines += [
        "",
        "P(disputed) of the first row: "
        + ", ".join(f"{k} {r['probability']:.6f}" for k, r in result["results"].items()),
    ]
    ready = result["conveyor_ready_s"]
    if ready:
        lines.append("conveyor serve ready: " + ", ".join(f"{t:.2f}" for t in ready) + " s")
    lines += ["", "Goals (issue 15):"]
    lines += [f"  {g['goal']:58} {g['measured']:>34}  {'met' if g['met'] else 'NOT met'}" for g in result["goals"]]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds a point")
    parser.add_argument("--warmup", type=float, default=2.0, help="unclocked seconds before each point")
    parser.add_argument("--sides", nargs="+", default=["conveyor", "mlserver", "flask"], help="which servers to run")
    parser.add_argument("--workers", type=int, default=1, help="conveyor serve's --workers")
    parser.add_argument("--json", action="store_true", help=f"also write {OUT.relative_to(ROOT)}")
    parser.add_argument("--child", choices=["load"], help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=json.loads, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(load_child(args.spec)))
        return 0
    sides = [s for s in SIDES if s.server in args.sides]
    if args.workers > 1:
        sides = [Side(s.server, s.model, s.protocol, args.workers) if s.server == "conveyor" else s for s in sides]
    result = run(sides, args.warmup, args.duration)
    print(report(result))
    if args.json:
        OUT.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
