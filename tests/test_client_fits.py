"""The one "could any agent ever hold this request" check (mesos_nb/client/fits.py) that
``mesos-nb run``, ``%mesos submit`` and the kernel provisioner all make before waiting."""

from __future__ import annotations

from mesos_nb.client.fits import NoFit, never_fits, port_count
from mesos_nb.protocol.state import AgentView


def agent(host: str, cpus: float, mem: float, ports: str = "", active: bool = True,
          **attributes: str) -> AgentView:
    res: dict[str, object] = {"cpus": cpus, "mem": mem, "disk": 1000.0}
    if ports:
        res["ports"] = ports
    return AgentView(id=host, hostname=host, resources=res, attributes=attributes, active=active)


def test_no_agents_counts_only_active_ones():
    assert never_fits([], {"cpus": 1}, {}) == NoFit("no_agents", 0, 0)
    gone = [agent("a", 8, 8192, active=False)]
    assert never_fits(gone, {"cpus": 1}, {}) == NoFit("no_agents", 0, 0)


def test_attributes_no_agent_has():
    agents = [agent("a", 8, 8192, rack="r1"), agent("b", 8, 8192, active=False, rack="r2")]
    assert never_fits(agents, {"cpus": 1}, {"rack": "r2"}) == NoFit("attributes", 1, 0)
    assert never_fits(agents, {"cpus": 1}, {"rack": "r1"}) is None


def test_too_small_names_the_biggest_candidate_and_the_counts():
    agents = [agent("small", 2, 1024, rack="r1"), agent("big", 4, 512, rack="r1"),
              agent("huge-elsewhere", 64, 65536, rack="r2"), agent("tie", 4, 2048, rack="r1")]
    gap = never_fits(agents, {"cpus": 8, "mem": 256}, {"rack": "r1"})
    assert gap is not None and gap.reason == "too_small"
    assert (gap.agents, gap.candidates) == (4, 3)
    # the largest agent WITH the attributes (cpus first, then mem), not the largest overall
    assert gap.biggest is not None and gap.biggest.hostname == "tie"


def test_fits_on_totals_not_on_what_is_free():
    busy = AgentView(id="a", hostname="a", resources={"cpus": 4, "mem": 4096},
                     used_resources={"cpus": 4, "mem": 4096})
    assert never_fits([busy], {"cpus": 4, "mem": 4096}, {}) is None
    # one agent with enough cpus and another with enough mem is not one that holds both
    split = [agent("c", 8, 256), agent("m", 1, 8192)]
    assert never_fits(split, {"cpus": 4, "mem": 4096}, {}).reason == "too_small"


def test_ports_for_kernels():
    assert port_count("[31000-31010, 32000-32000]") == 12
    assert port_count(None) == 0
    few = [agent("a", 8, 8192, ports="[31000-31002]")]
    gap = never_fits(few, {"cpus": 1, "mem": 512}, {}, ports=5)
    assert gap is not None and gap.reason == "too_small" and gap.biggest.hostname == "a"
    assert never_fits(few, {"cpus": 1, "mem": 512}, {}) is None  # no ports asked: fits
    enough = few + [agent("b", 2, 1024, ports="[31000-31004]")]
    assert never_fits(enough, {"cpus": 1, "mem": 512}, {}, ports=5) is None
