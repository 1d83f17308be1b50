"""``conveyor serve``: models over REST and gRPC, and with ``--workers N`` the N-1 more server
processes that share the first one's ports."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from conveyor.cli.errors import UserError, user_errors
from conveyor.cli.paths import home


@click.command()
@click.option(
    "--model-dir",
    metavar="DIR",
    callback=home,
    help="A bundle, or a folder of integer version folders (the highest is served, and a newer one swapped in).",
)
@click.option("--model-name", metavar="NAME", help="The name requests use: /v1/models/NAME:predict.")
@click.option(
    "--config",
    "config_file",
    metavar="FILE",
    callback=home,
    help="A YAML file listing models (name, base_path, version_policy, labels), instead of the two above.",
)
@click.option(
    "--poll-seconds",
    type=click.FloatRange(min=0),
    metavar="S",
    help="Rescan the model folders for new versions every S seconds; 0 never [default: 2, or the config's].",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; loopback unless told otherwise.")
@click.option(
    "--rest-port", type=click.IntRange(0, 65535), default=8501, show_default=True, help="REST port; 0 picks a free one."
)
@click.option(
    "--grpc-port",
    type=click.IntRange(0, 65535),
    default=8500,
    show_default=True,
    help="gRPC port (the Open Inference Protocol); 0 picks a free one.",
)
@click.option(
    "--auth-token-file",
    metavar="FILE",
    callback=home,
    help="Ask every request but the health checks for `Authorization: Bearer <the token in FILE>`.",
)
@click.option(
    "--max-request-bytes",
    type=click.IntRange(min=1024),
    metavar="N",
    help="The largest request read, a REST body or a gRPC message (gRPC's own default is 4 MiB) "
    "[default: 16 MiB, or the config's max_request_bytes].",
)
@click.option("--tls-cert", metavar="FILE", callback=home, help="Serve HTTPS and gRPC over TLS with this PEM certificate (chain).")
@click.option("--tls-key", metavar="FILE", callback=home, help="The PEM private key of --tls-cert.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Server processes sharing the ports, each with the models loaded: to use more than one core. "
    "/metrics then counts the requests of the process that answers it.",
)
@click.option("--join-ports", is_flag=True, hidden=True, help="Bind with SO_REUSEPORT: a worker of --workers.")
@click.option(
    "--exit-with-parent", is_flag=True, hidden=True, help="Stop when stdin closes: a worker, when its server dies."
)
@user_errors
def serve(
    model_dir: str | None,
    model_name: str | None,
    config_file: str | None,
    poll_seconds: float | None,
    host: str,
    rest_port: int,
    grpc_port: int,
    auth_token_file: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    max_request_bytes: int | None,
    workers: int,
    join_ports: bool,
    exit_with_parent: bool,
) -> None:
    """Serve models over REST (TF Serving's API, the Open Inference Protocol) and gRPC (the Open Inference Protocol)."""
    if config_file and (model_dir or model_name):
        msg = "give either --config FILE or --model-dir DIR --model-name NAME, not both."
        raise UserError(msg)
    if not config_file and not (model_dir and model_name):
        msg = "conveyor serve needs --model-dir DIR and --model-name NAME (or --config FILE)."
        raise UserError(msg)
    if bool(tls_cert) != bool(tls_key):
        msg = "TLS needs both --tls-cert FILE and --tls-key FILE."
        raise UserError(msg)
    if exit_with_parent:
        _exit_with_parent()
    from conveyor.serving import ModelServer
    from conveyor.serving.config import (
        DEFAULT_POLL_SECONDS,
        ModelConfig,
        TlsConfig,
        local_folder,
        read_server_config,
        read_token,
    )

    unapplied: list[str] = []
    models: dict[str, Path | ModelConfig]
    config = read_server_config(config_file) if config_file else None
    if config is not None:
        models, unapplied = {m.name: m for m in config.models}, config.unapplied
        poll_seconds = config.poll_seconds if poll_seconds is None else poll_seconds
    else:
        models = {str(model_name): local_folder(str(model_dir), "--model-dir")}
    poll_seconds = DEFAULT_POLL_SECONDS if poll_seconds is None else poll_seconds
    token_file = auth_token_file or (config.auth_token_file if config else None)
    tls = TlsConfig(Path(tls_cert), Path(tls_key)) if tls_cert and tls_key else (config.tls if config else None)
    server = ModelServer(
        models,
        host=host,
        rest_port=rest_port,
        grpc_port=grpc_port,
        poll_seconds=poll_seconds,
        prediction_log=config.prediction_log if config else None,
        auth_token=read_token(token_file) if token_file else None,
        tls=tls,
        batching=config.batching if config else None,
        reuse_port=workers > 1 or join_ports,
        **({"max_body_bytes": limit} if (limit := max_request_bytes or (config and config.max_request_bytes)) else {}),
    )
    server.bind()
    if not token_file and not join_ports and not _loopback(host):  # a worker: its server warned
        click.echo(
            f"warning: serving on {host} with no token: anyone who reaches this machine can call the models; "
            "give --auth-token-file FILE (or `auth: {token_file: FILE}` in the config).",
            err=True,
        )
    if unapplied:
        click.echo(f"note: {', '.join(unapplied)} in {config_file} is read but not applied yet.", err=True)
    _announce(server.registry)
    click.echo(f"REST on {server.url} (ready: {server.url}/v2/health/ready)")
    if poll_seconds:
        import logging

        swaps = logging.getLogger("conveyor.serving")  # versions loaded or failed while serving, to stderr
        swaps.addHandler(logging.StreamHandler())
        swaps.setLevel(logging.INFO)
    click.echo(f"gRPC on {server.grpc_address} (inference.GRPCInferenceService)")
    others = start_workers(workers - 1, server.port, server.grpc_port)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn finished the requests in flight, then passed Ctrl-C on
        click.echo("stopped.", err=True)
    finally:
        stop_workers(others)


def _loopback(host: str) -> bool:
    """Whether ``host`` is reached only from this machine (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name
        return host == "localhost"


def _announce(registry: Any) -> None:
    """Each version served. A function, so that no loop variable outlives it: a version the
    server still referenced here would never be unloaded after a swap."""
    for name in registry.names():
        for served in registry.versions(name):
            click.echo(f"serving {name!r} version {served.version} from {served.path}")


def start_workers(count: int, rest_port: int, grpc_port: int | None) -> list[Any]:
    """``count`` more ``conveyor serve`` processes with this one's options, on the ports it bound
    (SO_REUSEPORT: the kernel spreads connections over all of them).

    Each gets a pipe as stdin whose other end only this process holds: when it dies, even by
    SIGKILL, the kernel closes that end, and the worker, reading EOF, stops (``--exit-with-parent``)
    rather than keep the ports. A pipe works wherever Python runs, where PR_SET_PDEATHSIG is Linux's.
    """
    import subprocess

    ctx = click.get_current_context()
    own = ("rest_port", "grpc_port", "workers", "join_ports", "exit_with_parent")
    args = ["--rest-port", str(rest_port), "--grpc-port", str(grpc_port), "--workers", "1", "--join-ports"]
    args.append("--exit-with-parent")
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if isinstance(param, click.Option) and param.name not in own:
            if param.is_flag and value:
                args.append(param.opts[0])
            elif not param.is_flag and value is not None:
                args += [param.opts[0], str(value)]
    command = [sys.executable, "-m", "conveyor", "serve", *args]
    return [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL) for _ in range(count)]


def _exit_with_parent() -> None:
    """Stop this process (SIGTERM: the requests in flight finish) once stdin, the pipe from the
    server that started it, reads EOF: that server is gone."""
    import os
    import signal
    import threading

    def watch() -> None:
        while sys.stdin.buffer.read(1 << 12):
            pass  # the server writes nothing; only its end's closing matters
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="conveyor-parent-watch", daemon=True).start()


def stop_workers(workers: list[Any]) -> None:
    """SIGTERM to each: it finishes its requests in flight (5 s at most), as this process does."""
    import subprocess

    for worker in workers:
        worker.terminate()
    for worker in workers:
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:  # stuck past its graceful shutdown
            worker.kill()
            worker.wait()
        if worker.stdin is not None:
            worker.stdin.close()
