"""The extension in real kernels: every notebook of notebooks/ executed by nbclient, the
``mesos-nb demo`` CLI, a second kernel joining the embedded cluster, the kernelspec."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

import nbformat  # noqa: E402
from conftest import REPO, cli_env, cluster_thread, free_port, get_json, run_cli  # noqa: E402

AGENT = "cpus:2;mem:1024;disk:1024"
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


# ============================================================================ output helpers
def outputs_of(nb: Any, startswith: str) -> list[dict]:
    cells = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(startswith)]
    assert len(cells) == 1, f"one cell starting with {startswith!r}"
    return cells[0].outputs


def text_of(outputs: list[dict]) -> str:
    parts = []
    for o in outputs:
        if o["output_type"] == "stream":
            parts.append(o["text"])
        elif o["output_type"] in ("execute_result", "display_data"):
            parts.append(o["data"].get("text/plain", ""))
        elif o["output_type"] == "error":
            parts.append("\n".join(o["traceback"]))
    return "\n".join(parts)


def check_quickstart(nb: Any, master_url: str) -> None:
    for c in nb.cells:
        if c.cell_type == "code" and "raises-exception" not in c.metadata.get("tags", []):
            errors = [o for o in c.outputs if o["output_type"] == "error"]
            assert not errors, f"cell {c.source[:40]!r} failed: {errors}"
    # nothing shown, nothing big saved (the BokehJS the page got from it is emptied right after)
    load_ext = outputs_of(nb, "%load_ext mesos_nb")
    assert text_of(load_ext) == "" and all(len(json.dumps(o)) < 1000 for o in load_ext), load_ext
    connect = text_of(outputs_of(nb, "cluster = %mesos connect"))
    assert f"Connected to the cluster at {master_url}: 2 agent(s), cpus 4, mem 2048" in connect
    status = text_of(outputs_of(nb, "%mesos status"))
    assert f"master           {master_url}" in status and "agents           2 active / 2" in status
    agents = outputs_of(nb, "%mesos agents")
    assert "2 agent(s) of" in text_of(agents) and "<table>" in agents[0]["data"]["text/html"]
    run = text_of(outputs_of(nb, "t = %mesos run"))
    assert "TASK_FINISHED on 127.0.0.1" in run and "requested: cpus 0.5, mem 64" in run
    logs = text_of(outputs_of(nb, "print(t.state)"))
    assert "TASK_FINISHED" in logs and "hello from mesos-nb" in logs and "the sandbox is /" in logs
    cell = outputs_of(nb, "%%mesos task --cpus 0.5 --mem 128")
    assert "computing on" in text_of(cell) and "/executors/pyexec-" in text_of(cell)
    value = [o for o in cell if o["output_type"] == "execute_result"]
    assert value and "'sum_of_squares': 332833500" in value[0]["data"]["text/plain"]
    assert "332833500 computed by pid" in text_of(outputs_of(nb, "result = _"))
    err = [o for o in outputs_of(nb, "%%mesos task --cpus 0.5 --mem 64\ndef check") if o["output_type"] == "error"]
    assert len(err) == 1 and err[0]["ename"] == "RemoteTaskError"
    tb = "\n".join(err[0]["traceback"])
    assert tb.startswith("Remote traceback (task cell-") and 'File "<mesos cell>", line 3, in check' in tb
    assert tb.rstrip().endswith("ValueError: 42 is too big for this cluster") and "mesos_nb/" not in tb
    offers = outputs_of(nb, "browser = %mesos offers")
    data = [o for o in offers if o["output_type"] == "execute_result"][0]["data"]
    assert "application/vnd.jupyter.widget-view+json" in data and "offer(s) held" in data["text/plain"]
    launched = text_of(outputs_of(nb, "first = browser.offers[0]"))
    assert "TASK_FINISHED on 127.0.0.1 | on the chosen offer's agent: True" in launched
    tasks = text_of(outputs_of(nb, "%mesos tasks --all"))
    assert tasks.count("TASK_FINISHED") >= 3 and "TASK_FAILED" in tasks and "this notebook" in tasks
    assert "hello from mesos-nb" in text_of(outputs_of(nb, "%mesos logs {t.id}"))
    assert text_of(outputs_of(nb, "%mesos disconnect")).startswith("disconnected: framework ")


EXPECTATIONS = {"quickstart.ipynb": check_quickstart}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    with cluster_thread(tmp_path_factory.mktemp("nbk-cluster"), 2, AGENT) as ct:
        yield ct


def kernel_env(home: Path, **extra: str) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    # The same user on the same machine: the kernel finds the local clusters this process started
    # (their credentials) through the discovery files, as it would under the user's own HOME.
    from mesos_nb.protocol.client_auth import state_dir

    if (state_dir() / "clusters").is_dir() and state_dir().resolve() != (home / ".mesos-nb").resolve():
        shutil.copytree(state_dir() / "clusters", home / ".mesos-nb" / "clusters", dirs_exist_ok=True)
    env = cli_env(HOME=str(home), **extra)
    env.pop("JPY_SESSION_NAME", None)
    return env


# ============================================================================ notebooks
def check_declared(nb: Any, master_url: str) -> None:
    """Expectations a notebook declares itself: a code cell's ``metadata.mesos_nb.expect`` lists
    strings its output text must contain; cells without the ``raises-exception`` tag must not fail."""
    declared = 0
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        if "raises-exception" not in c.metadata.get("tags", []):
            errors = [o for o in c.outputs if o["output_type"] == "error"]
            assert not errors, f"cell {c.source[:40]!r} failed: {errors}"
        for want in c.metadata.get("mesos_nb", {}).get("expect", []):
            declared += 1
            assert want in text_of(c.outputs), f"cell {c.source[:40]!r}: {want!r} not in its output"
    assert declared, "no expected outputs"


def notebook_params() -> list[Any]:
    params = []
    for p in NOTEBOOKS:
        meta = json.loads(p.read_text()).get("metadata", {}).get("mesos_nb", {})
        marks = [pytest.mark.skip(reason=f"executed by {meta['tested_by']}")] if meta.get("tested_by") else []
        params.append(pytest.param(p, id=p.name, marks=marks))
    return params


@pytest.mark.parametrize("path", notebook_params())
def test_notebook_executes_in_a_real_kernel(path: Path, cluster, tmp_path: Path):
    """Every notebook of notebooks/ runs in a real kernel and its outputs are asserted: by a check
    function here, by ``metadata.mesos_nb.expect`` in its cells, or by the test its notebook
    metadata names (``metadata.mesos_nb.tested_by``)."""
    from mesos_nb.notebook.demo import execute_notebook

    nb, err = execute_notebook(path, cluster.master_address, cwd=str(tmp_path), timeout=180,
                               env=kernel_env(tmp_path / "home"))
    assert err is None, f"{path.name} failed: {err}"
    EXPECTATIONS.get(path.name, check_declared)(nb, cluster.master_url)
    # the notebook's framework was torn down (or at least let go) by its last cell
    fws = get_json(cluster.master_url + "/master/state")["frameworks"]
    assert not [f for f in fws if f["name"].startswith("notebook") and f.get("active", True)
                and f.get("connected", True)]


def test_demo_cli_runs_the_quickstart(tmp_path: Path):
    out = tmp_path / "out" / "qs.executed.ipynb"
    env = kernel_env(tmp_path / "home", MESOS_NB_RESOURCES=AGENT)
    r = run_cli("demo", "--output", str(out), env=env, timeout=400)
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}" in r.stdout and "embedded cluster: http://127.0.0.1:" in r.stdout
    url = r.stdout.split("embedded cluster: ", 1)[1].split()[0]
    check_quickstart(nbformat.read(str(out), as_version=4), url)


def test_demo_cli_missing_notebook_is_one_sentence(tmp_path: Path):
    r = run_cli("demo", "--notebook", str(tmp_path / "nope.ipynb"), env=kernel_env(tmp_path / "home"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"mesos-nb: the notebook {tmp_path / 'nope.ipynb'} does not exist (give --notebook PATH)"


# ============================================================================ real kernels
class Kernel:
    def __init__(self, env: dict[str, str], kernel_name: str = "python3") -> None:
        from jupyter_client.manager import start_new_kernel

        self.km, self.kc = start_new_kernel(kernel_name=kernel_name, env=env, startup_timeout=120)

    def run(self, code: str, timeout: float = 120) -> str:
        """Execute ``code``; return its stdout (raising on an error)."""
        out: list[str] = []
        errors: list[str] = []

        def hook(msg: dict) -> None:
            c = msg["content"]
            if msg["msg_type"] == "stream":
                out.append(c["text"])
            elif msg["msg_type"] == "error":
                errors.append("\n".join(c["traceback"]))

        reply = self.kc.execute_interactive(code, timeout=timeout, output_hook=hook)
        if errors or reply["content"]["status"] != "ok":
            raise AssertionError(f"kernel error: {errors}")
        return "".join(out)

    def stop(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def test_second_kernel_joins_the_embedded_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from IPython.core.interactiveshell import InteractiveShell

    from mesos_nb.notebook import embedded

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("MESOS_NB_MASTER", raising=False)
    port = free_port()
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "mesos_nb")
    ip.run_line_magic("config", f"MesosMagics.local_port = {port}")
    ip.run_line_magic("config", f"MesosMagics.local_resources = '{AGENT}'")
    kernel = None
    try:
        first = ip.run_line_magic("mesos", "connect")  # kernel 1: nothing running -> embedded
        assert first.started and first.master_url == f"http://127.0.0.1:{port}"
        info = json.loads((home / ".mesos-nb" / "local.json").read_text())
        assert info["pid"] == os.getpid()
        # kernel 2: a real ipykernel on the same machine (same HOME), whose own default port is
        # elsewhere: it must find the running cluster through ~/.mesos-nb/local.json
        kernel = Kernel(kernel_env(home, MESOS_NB_LOCAL_PORT=str(free_port())))
        out = kernel.run("%load_ext mesos_nb\nc = %mesos connect\nprint(c.master_url, c.embedded, c.started)\n"
                         "import mesos_nb.notebook.embedded as e; print(e.current())")
        assert out.splitlines() == [f"{first.master_url} True False", "None"]
        fws = get_json(first.master_url + "/master/state")["frameworks"]
        assert len([f for f in fws if f["name"] == "notebook"]) == 2
        out = kernel.run("t = %mesos run --cpus 0.5 --mem 32 -- echo from kernel two\n"
                         "print(t.wait(60).state, t.logs().stdout.strip())")
        assert out.strip() == "TASK_FINISHED from kernel two"
        kernel.run("%mesos disconnect")
    finally:
        if kernel is not None:
            kernel.stop()
        ip.run_line_magic("mesos", "disconnect")
        embedded.stop_embedded()
        ip.run_line_magic("config", "MesosMagics.local_port = 5050")
        ip.run_line_magic("config", "MesosMagics.local_resources = ''")
        ip.run_line_magic("unload_ext", "mesos_nb")


def test_kernel_install_and_the_kernelspec_loads_the_extension(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    prefix = tmp_path / "prefix"
    r = run_cli("kernel", "install", "--prefix", str(prefix))
    assert r.returncode == 0, r.stderr
    spec_dir = prefix / "share" / "jupyter" / "kernels" / "mesos-nb"
    assert r.stdout.strip() == f"installed kernelspec mesos-nb in {spec_dir}"
    spec = json.loads((spec_dir / "kernel.json").read_text())
    shipped = json.loads((REPO / "kernels" / "mesos-nb" / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable and spec["argv"][1:] == shipped["argv"][1:]
    assert spec["display_name"] == shipped["display_name"] == "Python 3 (mesos-nb)"
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    kernel = Kernel(kernel_env(tmp_path / "home"), kernel_name="mesos-nb")
    try:
        out = kernel.run("print('mesos' in get_ipython().magics_manager.magics['line'])\n%mesos help")
        assert out.startswith("True")
        assert "%%mesos task" in kernel.run("print(repr(_))")
    finally:
        kernel.stop()


def test_demo_writes_its_executed_notebook_outside_the_working_directory(tmp_path: Path, monkeypatch):
    """Without --output, the executed copy goes to a new temporary folder (never into the
    checkout the user runs the demo from) and its path is printed."""
    from mesos_nb.notebook.demo import run_demo

    src = tmp_path / "tiny.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]), str(src))
    work = tmp_path / "checkout"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    said: list[str] = []
    out = Path(run_demo(notebook=str(src), agents=1, resources=AGENT, timeout=120, say=said.append))
    assert list(work.iterdir()) == []
    assert out.is_file() and out.name == "tiny.executed.ipynb" and work not in out.parents
    assert any(str(out) in s for s in said)
