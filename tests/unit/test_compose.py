"""docker-compose.yml as a careful operator would run it: unprivileged users, confinement kept
(or relaxed only with a written reason and the narrowest profile), secrets without defaults,
Flower not on the network, pinned images, an init and a health check for the workers."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
REQUIRED = ("TASKBENCH_SECRET_KEY", "TASKBENCH_ADMIN_API_KEY", "TASKBENCH_DB_PASSWORD",
            "TASKBENCH_REDIS_PASSWORD")
SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|TOKEN|AUTH")


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def _security_opts(service: dict[str, Any]) -> list[str]:
    return [str(o) for o in service.get("security_opt", [])]


def test_every_service_runs_as_an_unprivileged_user(services):
    for name, service in services.items():
        user = str(service.get("user", "")).split(":")[0]
        assert user and user not in ("0", "root"), name
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root")


def test_no_capabilities_and_no_privilege_gain(services):
    for name, service in services.items():
        assert service.get("cap_drop") == ["ALL"], name
        assert not service.get("cap_add") and not service.get("privileged"), name
        assert "no-new-privileges:true" in _security_opts(service), name


def test_confinement_is_relaxed_only_for_the_worker_with_a_reason_and_a_narrow_profile(services):
    raw = COMPOSE.read_text()
    for name, service in services.items():
        opts = _security_opts(service)
        assert not [o for o in opts if re.match(r"seccomp[=:]unconfined", o)], name
        if name != "worker":
            assert not [o for o in opts if o.startswith(("seccomp", "apparmor"))], name
    # the worker's seccomp profile is a file that still refuses the kernel-level calls
    (seccomp,) = [o for o in _security_opts(services["worker"]) if o.startswith("seccomp=")]
    profile = json.loads((ROOT / seccomp.split("=", 1)[1]).read_text())
    denied = {n for rule in profile["syscalls"] if rule["action"] == "SCMP_ACT_ERRNO"
              for n in rule["names"]}
    assert {"kexec_load", "init_module", "finit_module", "bpf", "keyctl", "ptrace",
            "perf_event_open", "open_by_handle_at", "reboot", "swapon"} <= denied
    assert not {"clone", "unshare", "mount", "pivot_root"} & denied  # what bubblewrap needs
    # and the reason is written beside it
    block = raw[raw.index("\n  worker:"):raw.index("\n  flower:")]
    comment = " ".join(line.strip("# ") for line in block.splitlines()
                       if line.strip().startswith("#"))
    assert "bubblewrap" in comment and "narrowest" in comment and "AppArmor" in comment


def test_secrets_come_from_the_environment_without_defaults(services):
    raw = COMPOSE.read_text()
    for name in REQUIRED:
        uses = re.findall(r"\$\{" + name + r"(:?[?-])?", raw)
        assert uses and all(u == ":?" for u in uses), name
    for var, default in re.findall(r"\$\{(\w+):-([^}]*)\}", raw):
        if SECRET_NAME.search(var):
            assert default == "", f"{var} has a default"
    for name, service in services.items():
        env = service.get("environment") or {}
        if isinstance(env, dict):
            for key, value in env.items():
                if SECRET_NAME.search(key):
                    assert "${" in str(value), f"{name}: {key} is written in the file"


def test_flower_is_not_on_the_network(services):
    flower = services["flower"]
    assert flower.get("profiles")  # not started by a plain `docker compose up`
    for port in flower.get("ports", []):
        assert str(port).startswith("127.0.0.1:"), port
    for name, service in services.items():
        for port in service.get("ports", []):
            if not str(port).startswith("127.0.0.1:"):
                assert name == "api", f"{name} publishes {port} to the network"


def test_images_are_pinned(services):
    for name, service in services.items():
        image = service.get("image", "")
        assert re.search(r":v?\d+\.\d+(\.\d+)?(-[\w.]+)?$", image), f"{name}: {image!r}"
    base = re.findall(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert base and all(re.search(r":\d+\.\d+\.\d+", b) for b in base)


def test_workers_have_an_init_and_a_health_check(services):
    worker = services["worker"]
    assert worker.get("init") is True
    assert worker["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")
    assert "ping" in " ".join(worker["healthcheck"]["test"])
    assert worker["environment"]["TASKBENCH_SANDBOX"] == "bwrap"
    assert services["api"].get("init") is True


def _compose_cli() -> bool:
    docker = shutil.which("docker")
    return bool(docker) and subprocess.run([docker, "compose", "version"], capture_output=True,
                                           timeout=30).returncode == 0


@pytest.mark.skipif(not _compose_cli(), reason="no `docker compose` CLI on this machine")
def test_docker_compose_config_accepts_it_and_requires_the_secret_key(tmp_path):
    env = {**os.environ, **{n: "x" * 40 for n in REQUIRED}}
    ok = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "-q"], env=env,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    del env["TASKBENCH_SECRET_KEY"]
    missing = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "-q"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and "TASKBENCH_SECRET_KEY" in missing.stderr
