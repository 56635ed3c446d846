"""The partition helper itself: a TCP echo across the veth link, a cut, and a heal."""

from __future__ import annotations

import subprocess
import sys
import textwrap

pytest_plugins = ["netns"]

ECHO_SERVER = textwrap.dedent("""
    import socket, sys, threading
    srv = socket.create_server((sys.argv[1], int(sys.argv[2])))
    print("listening", flush=True)
    def serve(c):
        with c:
            while data := c.recv(4096):
                c.sendall(data)
    while True:
        c, _ = srv.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
""")

# reads commands on stdin: 'send TEXT' | 'recv SECONDS'; answers one line each
CLIENT = textwrap.dedent("""
    import socket, sys
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
    buf = b""
    print("connected", flush=True)
    for line in sys.stdin:
        cmd, _, arg = line.rstrip("\\n").partition(" ")
        if cmd == "send":
            s.sendall((arg + "\\n").encode()); print("sent", flush=True)
        elif cmd == "recv":
            s.settimeout(float(arg))
            try:
                while b"\\n" not in buf:
                    buf += s.recv(4096)
                got, _, buf = buf.partition(b"\\n")
                print("got " + got.decode(), flush=True)
            except TimeoutError:
                print("timeout", flush=True)
""")

CONNECT_ONCE = textwrap.dedent("""
    import socket, sys
    try:
        socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()
        print("ok")
    except OSError as e:
        print(type(e).__name__, e.errno)
""")


def test_tcp_echo_survives_a_cut_and_heal(netns_pair):
    pair, port = netns_pair, "7000"
    server = pair.popen(pair.ns_b, [sys.executable, "-c", ECHO_SERVER, pair.addr_b, port],
                        stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "listening"
    client = pair.popen(pair.ns_a, [sys.executable, "-c", CLIENT, pair.addr_b, port],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(cmd: str) -> str:
        client.stdin.write(cmd + "\n")
        client.stdin.flush()
        return client.stdout.readline().strip()

    assert client.stdout.readline().strip() == "connected"
    assert ask("send hello") == "sent" and ask("recv 10") == "got hello"
    # loopback does not cross namespaces: the server is only reachable over the veth link
    assert "ok" not in pair.python(pair.ns_a, CONNECT_ONCE, "127.0.0.1", port).stdout

    pair.cut()
    # new connections fail at once (the link's route is gone) ...
    assert pair.python(pair.ns_a, CONNECT_ONCE, pair.addr_b, port).stdout.split()[0] == "OSError"
    # ... and an established connection delivers nothing while cut
    assert ask("send during-cut") == "sent"
    assert ask("recv 0.5") == "timeout"

    pair.heal()
    # TCP retransmits the queued bytes once the link is back: the echo arrives
    assert ask("recv 20") == "got during-cut"
    assert pair.python(pair.ns_a, CONNECT_ONCE, pair.addr_b, port).stdout.strip() == "ok"


def test_namespaces_are_removed_afterwards():
    from netns import NetnsPair, netns_unavailable_reason

    if netns_unavailable_reason():
        import pytest

        pytest.skip(netns_unavailable_reason())
    with NetnsPair() as pair:
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert pair.ns_a in names and pair.ns_b in names
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert pair.ns_a not in names and pair.ns_b not in names
