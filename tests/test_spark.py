"""Spark standalone master + workers as tasks of a real `mesos-nb local`, driver in this process."""

from __future__ import annotations

import contextlib
import os
import shutil

import psutil
import pytest

from mesos_nb.frameworks import spark as mspark

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _why_unavailable() -> str | None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed (pip install -e '.[spark]')"
    v = mspark.java_version()
    if v is None:
        return "no Java found (JAVA_HOME or java on PATH); Spark needs Java 17+"
    if v < 17:
        return f"Java {v} found; Spark needs Java 17+"
    return None


WHY = _why_unavailable()
if WHY and IN_CI:
    pytest.fail(f"CI must run the Spark tests but {WHY}", pytrace=False)
needs_spark = pytest.mark.skipif(WHY is not None, reason=WHY or "")

from conftest import REPO, get_json, start_cluster_process, stop_cluster_process, wait_for  # noqa: E402


def test_java_check_is_one_clear_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-java"))
    with pytest.raises(mspark.SparkUnavailable) as e:
        mspark.check_java()
    msg = str(e.value)
    assert msg.startswith("Spark needs Java 17 or newer") and msg.count(". ") == 0 and msg.endswith(".")
    fake = tmp_path / "old-java" / "bin"
    fake.mkdir(parents=True)
    (fake / "java").write_text('#!/bin/sh\necho \'openjdk version "11.0.2" 2019-01-15\' >&2\n')
    (fake / "java").chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "old-java"))
    assert mspark.java_version() == 11
    with pytest.raises(mspark.SparkUnavailable, match="java is version 11"):
        mspark.check_java()


@needs_spark
def test_mesos_spark_magic_range_count_on_two_executor_tasks(tmp_path_factory, tmp_path, monkeypatch):
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("no java")
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setenv("HOME", str(tmp_path))
    cp = start_cluster_process(tmp_path_factory.mktemp("spark-cluster"), resources="cpus:2;mem:2048;disk:1024")
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "mesos_nb")
    spark = None
    try:
        ip.run_line_magic("mesos", f"connect {cp.master}")
        spark = ip.run_line_magic("mesos", "spark --executors 2 --cpus 1 --mem 1024")
        cluster = spark.mesos_cluster
        assert spark.range(10**6).count() == 1000000
        # master + 2 workers are running tasks of the "spark" framework
        fws = [f for f in get_json(cp.url + "/master/state")["frameworks"] if f["name"] == "spark"]
        assert len(fws) == 1
        running = [t for t in fws[0]["tasks"] if t["state"] == "TASK_RUNNING"]
        assert sorted(t["name"] for t in running) == ["spark-master", "spark-worker", "spark-worker"]
        assert cluster.alive_workers() == 2
        # the daemons start with the quick-start JVM options (executors keep the JVM's defaults)
        cmdlines = []
        for p in psutil.Process(cp.proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):  # a zombie or gone: not a daemon
                cmdlines.append(p.cmdline())
        daemons = [c for c in cmdlines if {"org.apache.spark.deploy.master.Master",
                                           "org.apache.spark.deploy.worker.Worker"} & set(c)]
        assert len(daemons) == 3 and all(mspark.DAEMON_JAVA_OPTS.split()[0] in c for c in daemons), daemons
        # worker logs come from the sandboxes
        logs = cluster.logs()
        worker_logs = [v for k, v in logs.items() if k.startswith("spark-worker")]
        assert len(worker_logs) == 2
        assert all("Successfully registered with master" in v for v in worker_logs)
        assert "disconnected" in repr(ip.run_line_magic("mesos", "disconnect"))  # stops Spark too
        spark = None
        wait_for(lambda: not [f for f in get_json(cp.url + "/master/state")["frameworks"]
                              if f["name"] == "spark"], 30, message="the spark framework is gone")
    finally:
        if spark is not None:
            spark.mesos_cluster.stop()
        m = ip._mesos_nb_magics
        if m is not None and m.framework is not None:
            m.disconnect("")
        ip.run_line_magic("unload_ext", "mesos_nb")
        stop_cluster_process(cp)


@pytest.mark.slow
@needs_spark
def test_spark_notebook(tmp_path_factory, tmp_path):
    """notebooks/spark.ipynb in a real kernel (nbclient); its cells declare the outputs they expect.
    Slow: CI runs the notebook in JupyterLab instead (test_notebook_browser.py::test_spark_in_jupyterlab,
    which reads the same declared outputs from the page)."""
    pytest.importorskip("nbclient")
    from test_notebook_kernel import check_declared, kernel_env

    from mesos_nb.notebook.demo import execute_notebook

    cp = start_cluster_process(tmp_path_factory.mktemp("spark-nb"), resources="cpus:2;mem:2048;disk:1024")
    try:
        nb, err = execute_notebook(REPO / "notebooks" / "spark.ipynb", cp.master, cwd=str(tmp_path),
                                   timeout=300, env=kernel_env(tmp_path / "home"))
        assert err is None, f"spark.ipynb failed: {err}"
        check_declared(nb, cp.url)
    finally:
        stop_cluster_process(cp)
