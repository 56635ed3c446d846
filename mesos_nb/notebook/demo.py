"""``mesos-nb demo``: start an embedded cluster, run the quickstart notebook headlessly, save it."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from .errors import MesosNotebookError

REPO_NOTEBOOKS = Path(__file__).resolve().parent.parent.parent / "notebooks"


def quickstart_path() -> Path:
    return REPO_NOTEBOOKS / "quickstart.ipynb"


def execute_notebook(path: str | os.PathLike, master: str, *, cwd: str | None = None,
                     timeout: float = 180.0, env: dict[str, str] | None = None) -> Any:
    """Execute the notebook in a fresh kernel whose ``$MESOS_NB_MASTER`` is ``master``.

    Returns ``(notebook, error)``: the executed notebook (partial when a cell failed) and the
    nbclient exception or None.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(str(path), as_version=4)
    kenv = dict(os.environ if env is None else env)
    kenv["MESOS_NB_MASTER"] = master
    kenv.setdefault("JPY_SESSION_NAME", str(Path(path).resolve()))
    client = NotebookClient(nb, timeout=int(timeout), kernel_name=nb.metadata.get("kernelspec", {}).get("name", "python3"),
                            resources={"metadata": {"path": cwd or os.getcwd()}})
    try:
        client.execute(env=kenv, stderr=subprocess.DEVNULL)
    except CellExecutionError as e:
        return nb, e
    return nb, None


def run_demo(output: str | None = None, notebook: str | None = None, agents: int = 2,
             resources: str | None = None, timeout: float = 180.0, say: Any = print) -> str:
    """Run the quickstart against a fresh embedded cluster; returns the executed notebook's path."""
    import nbformat

    from .embedded import ClusterThread

    src = Path(notebook) if notebook else quickstart_path()
    if not src.is_file():
        raise MesosNotebookError(f"the notebook {src} does not exist (give --notebook PATH)")
    # default: a fresh temporary folder, never the checkout the user runs it from
    out = Path(output) if output else (Path(tempfile.mkdtemp(prefix="mesos-nb-demo-"))
                                       / (src.stem + ".executed.ipynb"))
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    ct = ClusterThread(agents=agents, port=0, agent_resources=resources)
    try:
        ct.start()
    except (OSError, TimeoutError) as e:
        raise MesosNotebookError(f"could not start the embedded cluster ({e})") from None
    say(f"embedded cluster: {ct.master_url} ({agents} agents)")
    say(f"executing {src} ...")
    try:
        nb, err = execute_notebook(src, ct.master_address, cwd=str(out.parent), timeout=timeout)
    finally:
        ct.stop()
    nbformat.write(nb, str(out))
    cells = sum(1 for c in nb.cells if c.cell_type == "code")
    if err is not None:
        first = str(getattr(err, "evalue", "") or err).strip().splitlines()
        raise MesosNotebookError(f"a cell of {src.name} failed ({getattr(err, 'ename', 'error')}: "
                                 f"{first[0] if first else ''}); the partial notebook is in {out}")
    say(f"ran {cells} code cells in {time.monotonic() - t0:.1f} s; wrote {out}")
    say(f"read it in JupyterLab: jupyter lab {out}")
    return str(out)


__all__ = ["execute_notebook", "quickstart_path", "run_demo"]
