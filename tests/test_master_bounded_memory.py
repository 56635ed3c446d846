"""What the master keeps does not grow with time under churn: offers made and declined, agents
coming and going (a soak showed ~0.7 MiB a minute of live records growing before these bounds)."""

from __future__ import annotations

import json

from mesos_nb.master.harness import Harness
from mesos_nb.master.readonly import ReadOnlyViews
from mesos_nb.master.server import MasterConfig, MasterServer
from mesos_nb.protocol import channel as ch
from mesos_nb.protocol.resources import Resources

AGENTS = 6


async def test_state_documents_keep_only_the_resource_bags_they_still_show():
    h = Harness.build(agents=AGENTS, frameworks=2, resources="cpus:4;mem:4096")
    srv = MasterServer(MasterConfig(port=0))
    srv.core = h.core
    views = ReadOnlyViews(srv)
    held, running, n = [], [], 0
    for _ in range(40):  # each round: a task per framework starts, last round's end (new bags)
        offers = h.allocate()
        for fw in h.frameworks:
            mine = offers.get(fw.id, [])
            if mine:
                n += 1
                h.launch(fw, mine[0], f"t{n}", resources="cpus:0.5;mem:64")
                h.update(f"t{n}", "TASK_RUNNING")
                h.acknowledge(f"t{n}")
                h.decline(fw, mine[1:], refuse_seconds=0.0)
        doc = json.loads(await views._state.body())
        assert any(a["used_resources"]["cpus"] for a in doc["slaves"])
        await views.operator_state.body("GET_STATE")
        for tid in running:
            h.update(tid, "TASK_FINISHED")
            h.acknowledge(tid)
        running = [f"t{i}" for i in range(n - 1, n + 1)]
        held.append((views._state._summary.held(), views.operator_state._resources.held()))
    assert n >= 60
    # a render names at most two bags an agent (used, offered): the last two renders' are kept
    assert max(max(pair) for pair in held) <= 2 * 2 * AGENTS, held


def test_removed_agents_are_remembered_up_to_the_bound_oldest_forgotten_first():
    h = Harness.build(agents=0, frameworks=0)
    h.core.max_removed_agents = 3
    ids = []
    for i in range(5):
        a = h.add_agent(hostname=f"churn{i}")
        ids.append(a.id)
        h.core.agent_principals[a.id] = f"p{i}"  # (the harness registers without a principal)
        h.core.remove_agent(a.id, h.now, "test", "gone away")
    assert list(h.core.removed_agents) == ids[2:]
    assert set(h.core.agent_principals) == set(ids[2:])  # the forgotten ones' owners with them
    # a recently removed id that comes back is checked against its owner still
    reg = ch.RegisterAgent(key="kx", hostname="churn4", port=5099, agent_id=ids[4],
                           resources=Resources.parse("cpus:1;mem:64").to_proto())
    h.core.register_agent(reg, h.channel, h.now, principal="p4")
    assert ids[4] not in h.core.removed_agents and h.core.agent_principals[ids[4]] == "p4"
