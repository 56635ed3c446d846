"""The README's shell tour, run as written: each command of its "Try it from a shell" block goes
through bash exactly as the README prints it (only ``.venv/bin/`` is this interpreter's
``python -m``), and what its comment promises is checked. A private HOME and ``MESOS_NB_PORT`` /
``MESOS_NB_MASTER`` (the README: "every option also reads ``MESOS_NB_<OPTION>``") keep the tour's
``mesos-nb local`` off port 5050, which other runs on this machine may hold.

When the README's tour changes, this test fails until it checks the new commands."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, ClusterProcess, cli_env, free_port, stop_cluster_process, wait_for

TOUR = [
    ".venv/bin/mesos-nb local --agents 2 &",
    ".venv/bin/mesos-nb run --cpus 0.5 --mem 64 -- sh -c 'echo hi; exit 3'",
    ".venv/bin/mesos-nb tasks --all",
    ".venv/bin/mesos-nb agents; .venv/bin/mesos-nb frameworks; .venv/bin/mesos-nb status",
    ".venv/bin/mesos-nb run --cpus 99 -- echo hi",
]


def readme_block(heading: str) -> list[tuple[str, str]]:
    """(command, comment) for each line of the first ```bash block under ``heading``."""
    text = (REPO / "README.md").read_text()
    section = text.split(f"\n## {heading}\n", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    out = []
    for line in block.splitlines():
        cmd, _, comment = line.partition("  #")
        if cmd.strip():
            out.append((cmd.strip(), comment.strip()))
    return out


def as_run_here(cmd: str) -> str:
    return cmd.replace(".venv/bin/mesos-nb", f"{shlex.quote(sys.executable)} -m mesos_nb")


@pytest.fixture
def tour_env(tmp_path: Path) -> dict[str, str]:
    port = free_port()
    home = tmp_path / "home"
    home.mkdir()
    # as a user's shell: no test switches (cli_env's MESOS_NB_SWITCH_USER=0 is kept: tasks run as
    # the agent's user, which is what a non-root user gets anyway)
    return cli_env(HOME=str(home), MESOS_NB_PORT=str(port), MESOS_NB_MASTER=f"127.0.0.1:{port}")


def sh(cmd: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", as_run_here(cmd)], env=env, cwd=str(REPO), capture_output=True,
                          text=True, timeout=timeout)


def test_the_readme_shell_tour_does_what_it_says(tour_env, tmp_path: Path):
    lines = readme_block("Try it from a shell")
    assert [c for c, _ in lines] == TOUR, "the README's tour changed: make this test check the new commands"
    comments = dict(lines)
    port = tour_env["MESOS_NB_PORT"]

    # 1. `mesos-nb local --agents 2 &`: prints the master and web UI URL (in the background)
    log = open(tmp_path / "local.log", "w+")
    local = subprocess.Popen(["bash", "-c", as_run_here(TOUR[0].rstrip("& "))],
                             env=tour_env, cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        assert "prints the master and web UI URL" in comments[TOUR[0]]
        printed = wait_for(lambda: local.poll() is None and "web UI:" in Path(log.name).read_text()
                           and Path(log.name).read_text(), timeout=60,
                           message="mesos-nb local did not print its URLs")
        assert f"master: http://127.0.0.1:{port}" in printed and f"web UI: http://127.0.0.1:{port}/" in printed
        assert len(re.findall(r"^agent: ", printed, re.M)) == 2

        # 2. prints hi, exits 3
        assert "prints hi, exits 3" in comments[TOUR[1]]
        r = sh(TOUR[1], tour_env)
        assert (r.returncode, r.stdout) == (3, "hi\n"), r.stderr

        # 3. `tasks --all` lists it as TASK_FAILED; plain `tasks` lists live tasks only
        assert "TASK_FAILED" in comments[TOUR[2]] and "plain `tasks` lists live tasks only" in comments[TOUR[2]]
        r = sh(TOUR[2], tour_env)
        assert r.returncode == 0, r.stderr
        failed = [ln for ln in r.stdout.splitlines() if " sh " in f" {ln} " and "TASK_FAILED" in ln]
        assert len(failed) == 1, r.stdout
        r = sh(TOUR[2].replace(" --all", ""), tour_env)
        assert r.returncode == 0 and "TASK_FAILED" not in r.stdout, r.stdout

        # 4. agents; frameworks; status: the two agents, a frameworks table, the cluster's status
        r = sh(TOUR[3], tour_env)
        assert r.returncode == 0, r.stderr
        assert len(re.findall(r"-S\d+\s+127\.0\.0\.1:\d+\s+yes", r.stdout)) == 2, r.stdout
        assert re.search(r"^ID\s+NAME\s+ACTIVE", r.stdout, re.M), r.stdout
        assert f"http://127.0.0.1:{port}" in r.stdout and "2 active / 2" in r.stdout

        # 5. exits 2 at once: no agent can ever fit 99 CPUs
        assert "exits 2 at once" in comments[TOUR[4]]
        t0 = time.monotonic()
        r = sh(TOUR[4], tour_env)
        took = time.monotonic() - t0
        assert r.returncode == 2 and "no agent can ever fit cpus 99" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and r.stdout == ""
        assert took < 30, f"`run --cpus 99` took {took:.1f} s"  # the default offer wait is minutes
    finally:
        stop_cluster_process(ClusterProcess(proc=local, port=int(port), work_dir=tmp_path, log_path=Path(log.name)))
        log.close()


def test_the_readme_install_gives_a_notebook_user_everything():
    """The README's install line (``pip install -e '.[EXTRAS]'``) holds every package the notebooks,
    the dashboards and JupyterLab need; the design names them as the project's own dependencies."""
    import tomllib

    first = readme_block_at_top()
    m = re.search(r"pip install -e '\.\[([\w,]+)\]'", first)
    assert m, f"no `pip install -e '.[…]'` in the README's first block: {first!r}"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in m.group(1).split(","):
        reqs += project["optional-dependencies"][extra]
    names = {re.split(r"[<>=\[ ;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in reqs}
    need = {"ipykernel", "ipywidgets", "dask", "distributed", "kazoo", "psutil", "bokeh", "jupyter-bokeh",
            "ipyparallel", "jupyterlab", "notebook", "nbclient"}
    assert need <= names, f"the README's install lacks {sorted(need - names)}"
    assert "mesos-nb demo" in first


def readme_block_at_top() -> str:
    text = (REPO / "README.md").read_text()
    return text.split("```bash\n", 1)[1].split("```", 1)[0]


def test_the_readme_points_only_at_files_a_clone_has():
    """Every repository path the README names (in backticks) exists in the checkout; no design
    notes that only the developers have."""
    text = (REPO / "README.md").read_text()
    named = set(re.findall(r"`((?:[\w.-]+/)*[\w.-]+\.(?:md|py|ipynb|toml|yml|sh|json)|(?:[\w.-]+/)+)`", text))
    named |= set(re.findall(r"\[[^]]*\]\(((?!https?:)[^)#]+)\)", text))  # markdown links
    assert "notebooks/quickstart.ipynb" in named, named
    written = {"tests/artifacts/"}  # where the browser tests put their screenshots
    # the notebooks table names notebooks/'s files by their own names
    missing = sorted(p for p in named - written if not (REPO / p).exists() and not (REPO / "notebooks" / p).exists())
    assert not missing, f"the README names files a clone does not have: {missing}"
    assert "DESIGN" not in text and "shared/" not in text
