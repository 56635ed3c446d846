"""App and job definitions from typed input (``frameworks/apps/definitions.py``): the CLI and the
``%mesos`` magics declare the same options and build the same definition, refusing bad input with
the same sentence."""

from __future__ import annotations

import argparse
import json

import pytest

from mesos_nb.frameworks.apps import definitions


def parse(kind: str, *words: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    definitions.add_arguments(p, kind)
    return p.parse_args(list(words))


def test_app_from_options_and_from_a_file(tmp_path):
    app = definitions.app_from_args(parse("app", "--id", "/web", "--cmd", "serve", "--instances", "2", "--mem", "64",
                                          "--port", "0", "--env", "A=1", "--constraint", "hostname:UNIQUE"))
    assert app == {"id": "/web", "cmd": "serve", "instances": 2, "mem": 64.0, "ports": [0], "env": {"A": "1"},
                   "constraints": [["hostname", "UNIQUE"]]}
    f = tmp_path / "app.json"
    f.write_text(json.dumps({"id": "/old", "cmd": "x", "env": {"B": "2"}}))
    app = definitions.app_from_args(parse("app", str(f), "--id", "/new", "--env", "A=1"))
    assert app == {"id": "/new", "cmd": "x", "env": {"B": "2", "A": "1"}}


def test_notebook_job_takes_its_id_from_the_file_and_sends_parameters(tmp_path):
    nb = tmp_path / "Daily Report.ipynb"
    nb.write_text("{}")
    job, notebook = definitions.job_from_args(parse("job", str(nb), "--every", "5m", "-p", "a=1"), now=0)
    assert notebook == str(nb)
    assert job == {"id": "daily-report", "schedule": "R/1970-01-01T00:00:00Z/PT5M"}


@pytest.mark.parametrize("kind, words, says", [
    ("app", ("--cmd", "x"), "--cmd needs --id"),
    ("app", ("f.json", "--cmd", "x"), "not both"),
    ("app", (), "give a definition FILE"),
    ("app", ("--id", "/a", "--cmd", "x", "--env", "NOEQUALS"), "--env 'NOEQUALS': expected NAME=VALUE"),
    ("app", ("/nonexistent.json",), "no such file: /nonexistent.json"),
    ("job", ("--id", "j", "--cmd", "x", "-p", "a=1"), "-p NAME=VALUE is for notebook jobs"),
    ("job", ("--id", "j", "--cmd", "x", "--cron", "* * * * *", "--every", "5m"), "--cron or --every, not both"),
    ("job", ("--id", "j", "--cmd", "x", "--every", "5x"), "--every '5x'"),
    ("job", ("missing.ipynb",), "no such notebook: missing.ipynb"),
])
def test_bad_input_is_one_sentence(kind, words, says):
    build = definitions.app_from_args if kind == "app" else (lambda a: definitions.job_from_args(a, now=0))
    with pytest.raises(ValueError) as e:
        build(parse(kind, *words))
    assert says in str(e.value)


def test_a_definition_file_without_an_id_is_refused(tmp_path):
    f = tmp_path / "job.json"
    f.write_text(json.dumps({"cmd": "true"}))
    with pytest.raises(ValueError, match="has no id"):
        definitions.job_from_args(parse("job", str(f)), now=0)
    f.write_text("[1]")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        definitions.job_from_args(parse("job", str(f)), now=0)
