"""zk:// URL parsing: the forms Mesos accepts, one sentence for each mistake."""

from __future__ import annotations

import pytest

from mesos_nb.protocol.zk_url import ZkUrl, ZkUrlError, is_zk_url, parse_zk_url


def test_servers_path_and_credentials():
    u = parse_zk_url("zk://alice:s3cret@h1:2181,h2:2182/mesos")
    assert u == ZkUrl(servers=(("h1", 2181), ("h2", 2182)), path="/mesos", username="alice", password="s3cret")
    assert u.hosts == "h1:2181,h2:2182"
    assert u.digest == "alice:s3cret"
    assert str(u) == "zk://alice:***@h1:2181,h2:2182/mesos"  # never the password in logs


def test_defaults_and_normalisation():
    assert parse_zk_url("zk://h1").path == "/"
    assert parse_zk_url("zk://h1").servers == (("h1", 2181),)
    assert parse_zk_url("  zk://h1:2181/a/b/ ").path == "/a/b"
    assert parse_zk_url("zk://[::1]:2181/m").hosts == "[::1]:2181"
    # credentials end at the LAST '@' (as Mesos): a password may contain '@'
    u = parse_zk_url("zk://bob:p@ss@h:1/x")
    assert (u.username, u.password, u.servers) == ("bob", "p@ss", (("h", 1),))
    assert is_zk_url("ZK://h/x") and not is_zk_url("h:5050")


@pytest.mark.parametrize(("text", "match"), [
    ("h1:2181/mesos", "starting with zk://"),
    ("zk:///mesos", "No ZooKeeper servers"),
    ("zk://h1:2181,,h2:2181/m", "Empty server"),
    ("zk://h1:notaport/m", "Invalid port 'notaport'"),
    ("zk://h1:0/m", "Invalid port '0'"),
    ("zk://h1:65536/m", "Invalid port"),
    ("zk://:2181/m", "Missing host"),
    ("zk://user@h1:2181/m", "user:password@"),
    ("zk://::1:2181/m", r"\[address\]:port"),
    ("zk://[::1:2181/m", "Unclosed"),
    ("zk://h1:2181/a//b", "Invalid znode path"),
    ("zk://h1:2181/a/../b", "Invalid znode path"),
    ("zk://h1:2181/a b", "whitespace"),
])
def test_bad_urls_name_the_problem(text, match):
    with pytest.raises(ZkUrlError, match=match):
        parse_zk_url(text)
