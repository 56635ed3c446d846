"""The agents plot's columns on a big cluster: groups per rack attribute, else buckets of
hostnames; per agent up to ``GROUP_ABOVE`` agents (pure transforms of mesos_nb.dashboards.data)."""

from __future__ import annotations

from mesos_nb.dashboards import data as d


def _agent(i: int, cpus_alloc: float = 1.0) -> dict:
    return {"id": f"a{i}", "hostname": f"10.0.{i}.1", "port": 5051,
            "total": {"cpus": 4.0, "mem": 1024.0}, "allocated": {"cpus": cpus_alloc, "mem": 0.0},
            "used": {"cpus": None, "mem": None}}


def test_rack_attribute_groups_sum_their_agents_and_name_the_busiest():
    agents = [_agent(i, cpus_alloc=3.0 if i == 7 else 1.0) for i in range(10)]
    keys = [d.group_key({"rack": "r1" if i < 8 else "r2"}) for i in range(10)]
    groups = d.agent_groups(agents, keys)
    assert [(g["group"], g["agents"]) for g in groups] == [("rack r1", 8), ("rack r2", 2)]
    assert groups[0]["total"]["cpus"] == 32.0 and groups[0]["allocated"]["cpus"] == 10.0
    assert groups[0]["busiest"] == "10.0.7.1:5051"


def test_agents_without_a_rack_are_bucketed_in_hostname_order():
    agents = [_agent(i) for i in range(300)]
    groups = d.agent_groups(agents, [None] * 300)
    assert len(groups) == d.MAX_GROUPS and sum(g["agents"] for g in groups) == 300
    assert groups[0]["group"] == "10.0.0…14.1"  # 2 sorts before 10: numbers compare as numbers
    assert d._range_label("n01.dc.example", "n50.dc.example") == "n01…n50.dc.example"
    assert d.group_key({"os": "linux"}) is None


def test_agents_plot_switches_to_groups_above_the_threshold():
    few = [_agent(i) for i in range(d.GROUP_ABOVE)]
    per_agent = d.agents_update({"agents": few, "agents_total": len(few), "groups": []})
    assert per_agent["factors"][0] == "10.0.0.1:5051" and len(per_agent["factors"]) == d.GROUP_ABOVE
    many = [_agent(i) for i in range(100)]
    snap = {"agents": many[:40], "agents_total": 100, "groups": d.agent_groups(many, [None] * 100)}
    grouped = d.agents_update(snap)
    assert grouped["factors"][0] == "10.0.0…4.1 (5)" and sum(grouped["data"]["agents"]) == 100
    assert grouped["data"]["cpus_allocated_frac"][0] == 0.25
    assert d.busiest_update(snap)["factors"][-1] == "10.0.0.1:5051"  # the busiest at the top
