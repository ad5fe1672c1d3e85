"""`splatforge serve`: the job service (API under /v1, web UI at /, OpenAPI at /docs)."""

from __future__ import annotations

from pathlib import Path

import typer


def serve_command(
    host: str = typer.Option("127.0.0.1", envvar="SPLATFORGE_HOST", help="Address to listen on."),
    port: int = typer.Option(8000, envvar="SPLATFORGE_PORT", help="Port to listen on."),
    token: str = typer.Option(None, envvar="SPLATFORGE_TOKEN",
                              help="Bearer token clients must send (default: a random one, printed at start)."),
    no_auth: bool = typer.Option(False, "--no-auth", envvar="SPLATFORGE_NO_AUTH",
                                 help="No token (only allowed when listening on localhost)."),
    workspace: Path = typer.Option(Path("splatforge-workspace"), envvar="SPLATFORGE_WORKSPACE",
                                   help="Folder for uploads and runs (shared storage when several hosts run jobs)."),
    db: str = typer.Option(None, "--db", envvar="SPLATFORGE_DB",
                           help="SQLAlchemy URL of the job store (default: sqlite in the workspace; "
                                "postgresql+psycopg://... for several hosts)."),
    ray_address: str = typer.Option(None, "--ray-address", envvar="SPLATFORGE_RAY_ADDRESS",
                                    help="Join this Ray cluster (default: start a local Ray instance)."),
    ray_cpus: int = typer.Option(None, "--ray-cpus", envvar="SPLATFORGE_RAY_CPUS",
                                 help="CPUs of the local Ray instance (default: all)."),
    ray_gpus: int = typer.Option(None, "--ray-gpus", envvar="SPLATFORGE_RAY_GPUS",
                                 help="GPUs the local Ray instance may give jobs, one each (default: all it finds)."),
    cancel_grace: float = typer.Option(30.0, "--cancel-grace", envvar="SPLATFORGE_CANCEL_GRACE_S",
                                       help="Seconds a cancelled job has to checkpoint and stop before it is killed."),
    worker_retries: int = typer.Option(2, "--worker-retries", envvar="SPLATFORGE_WORKER_RETRIES", min=0,
                                       help="Automatic retries of a job whose worker died (killed, out of "
                                            "memory); each resumes from the last checkpoint."),
    runner: str = typer.Option(None, "--runner", envvar="SPLATFORGE_SERVE_RUNNER", hidden=True,
                               help="module:function run for each job instead of the pipeline (tests)."),
) -> None:
    """Run the job service: upload captures, get splats back."""
    import secrets

    import uvicorn

    from splatforge.cli import fail
    from splatforge.console import console
    from splatforge.errors import SplatforgeError
    from splatforge.service.app import create_app
    from splatforge.service.settings import DEFAULT_RUNNER, ServiceSettings

    generated = False
    if not token and not no_auth:
        token, generated = secrets.token_urlsafe(32), True
    settings = ServiceSettings(host=host, port=port, token=token, no_auth=no_auth, workspace=workspace, db_url=db,
                               ray_address=ray_address, ray_num_cpus=ray_cpus, ray_num_gpus=ray_gpus,
                               runner=runner or DEFAULT_RUNNER,
                               cancel_grace_s=cancel_grace, worker_retries=worker_retries)
    try:
        app = create_app(settings)
    except SplatforgeError as exc:
        fail(exc)
    shown_host = f"[{host}]" if ":" in host else host
    console.print(f"splatforge serve: http://{shown_host}:{port}/  (API /v1, docs /docs, workspace {settings.workspace})")
    if generated:
        console.print(f"access token (give --token or SPLATFORGE_TOKEN to choose one): [bold]{token}[/]")
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
