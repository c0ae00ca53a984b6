"""Servers other than the configured one: each works, or refuses at start in one line that
says how to start qrevents."""

import configparser
import subprocess

import pytest

from tests.live import BIN, ROOT, LiveServer, free_port


def run_until_exit(command, server, cwd):
    return subprocess.run(
        command, cwd=cwd, env=server.env, capture_output=True, text=True, timeout=60
    )


def test_flask_run_refuses_at_start_in_one_line_saying_how_to_start(tmp_path):
    server = LiveServer(tmp_path)
    ran = run_until_exit(
        [str(BIN / "flask"), "--app", "app", "run", "--port", str(free_port())], server, ROOT
    )
    assert ran.returncode != 0
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1, ran.stderr
    assert "`flask run`" in lines[0] and "`gunicorn app:app`" in lines[0]


def test_flask_commands_still_build_the_app_in_process(tmp_path):
    server = LiveServer(tmp_path)
    ran = run_until_exit([str(BIN / "flask"), "--app", "app", "init-db"], server, ROOT)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "database ready"


@pytest.mark.parametrize(
    "worker", [[], ["-k", "gevent"], ["-k", "gthread"]], ids=["default-sync", "gevent", "gthread"]
)
def test_gunicorn_started_from_another_folder_refuses_in_one_line_and_stops(tmp_path, worker):
    """Without ./gunicorn.conf.py gunicorn runs its sync worker (or, named, another one, but
    without the shutdown hooks and the Redis check either): the app refuses to load, and
    gunicorn stops instead of booting workers again and again."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    server = LiveServer(tmp_path)
    ran = run_until_exit(
        [str(BIN / "gunicorn"), "--chdir", str(ROOT), "--bind", server.env["QREVENTS_BIND"]]
        + [*worker, "app:app"],
        server,
        elsewhere,
    )
    assert ran.returncode != 0
    refusals = [line for line in ran.stderr.splitlines() if line.startswith("qrevents:")]
    assert len(refusals) == 1, ran.stderr
    assert f"gunicorn -c {ROOT}/gunicorn.conf.py --chdir {ROOT} app:app" in refusals[0]
    assert "Traceback" not in ran.stderr
    assert ran.stderr.count("Booting worker") == 1


def test_the_configured_sync_worker_is_refused_too(tmp_path):
    """``-k sync`` on the command line overrides the config's gevent worker."""
    server = LiveServer(tmp_path)
    ran = run_until_exit(
        [str(BIN / "gunicorn"), "-k", "sync", "--bind", server.env["QREVENTS_BIND"], "app:app"],
        server,
        ROOT,
    )
    assert ran.returncode != 0
    refusals = [line for line in ran.stderr.splitlines() if line.startswith("qrevents:")]
    assert len(refusals) == 1 and "gevent worker" in refusals[0], ran.stderr


def test_the_start_command_the_refusal_gives_serves_streams_from_another_folder(tmp_path):
    """``gunicorn -c <project>/gunicorn.conf.py --chdir <project> app:app`` from elsewhere:
    the gevent worker, so an open stream leaves the server answering."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    server = LiveServer(tmp_path)
    args = ("-c", str(ROOT / "gunicorn.conf.py"), "--chdir", str(ROOT), "app:app")
    server.start(args=args, cwd=elsewhere)
    try:
        from tests.live import Api

        api = Api(server.base)
        tenant = api.new_tenant()
        with api.stream(tenant) as stream:
            assert stream.next().event == "connection"
            assert api.get("/health").status_code == 200
            assert stream.next().event == "heartbeat"
        assert "Using worker: gevent" in server.log()
    finally:
        server.stop()


def test_systemd_unit_starts_gunicorn_in_the_project_folder_and_restarts_on_failure():
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str
    unit.read(ROOT / "deploy" / "qrevents.service")
    service = unit["Service"]
    folder = service["WorkingDirectory"]
    assert folder.startswith("/")
    assert service["ExecStart"].split()[0] == f"{folder}/.venv/bin/gunicorn"
    assert service["ExecStart"].split()[-1] == "app:app"
    assert service["Restart"] == "on-failure"
    assert service["EnvironmentFile"].startswith("/etc/")
    assert int(service["LimitNOFILE"]) >= 65536
    assert service["KillSignal"] == "SIGTERM"
