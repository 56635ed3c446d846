"""I/O switchboard of a command task launched with ``ContainerInfo.tty_info`` (``task attach``).

Run as a *script* (``python -S switchboard.py NAME EXECUTABLE|'' ARGV...``, stdlib and
``exit_status.py`` only, like ``supervisor.py``). It opens a pseudo-terminal, forks the task command on it (own session, the
terminal as its controlling tty), copies everything the task writes to its own stdout (the
sandbox ``stdout`` file, as Mesos' switchboard does) and to every attached output client, and
feeds input clients' bytes into the terminal. Clients connect to the abstract unix socket
``@mesos-nb-io-NAME`` and send one byte first: ``O`` (output) or ``I`` (input); input then
carries frames ``D<len:u32><bytes>`` (keystrokes) and ``W<rows:u16><cols:u16>`` (window
size). Only peers running as the agent's user (or root) are accepted (``SO_PEERCRED``), since an
abstract socket has no file permissions. An output client that cannot keep up is dropped, so a stalled reader never blocks the
task. SIGTERM/SIGINT/SIGHUP are passed to the task's session; the switchboard exits with the
task's own wait status (re-raising a fatal signal), so the agent sees the task's status.
"""

import errno
import fcntl
import os
import selectors
import signal
import socket
import struct
import sys
import termios

if __package__:
    from .exit_status import wait_status
else:  # run as a script: this file's folder is sys.path[0]
    from exit_status import wait_status

_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def socket_name(name: str) -> str:
    return "\0mesos-nb-io-" + name


def _spawn(executable, args):
    master, slave = os.openpty()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(master)
            os.setsid()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            if slave > 2:
                os.close(slave)
            for s in (*_SIGNALS, signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(s, signal.SIG_DFL)
            os.execvp(executable or args[0], args)
        except OSError as e:
            os.write(2, f"Failed to execute '{executable or args[0]}': {e.strerror}\n".encode())
        os._exit(127)
    os.close(slave)
    return pid, master


def main(argv: list) -> int:
    if len(argv) < 4:
        sys.stderr.write("usage: switchboard.py NAME EXECUTABLE|'' ARGV...\n")
        return 2
    name, executable, args = argv[1], argv[2] or None, argv[3:]
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(socket_name(name))
    srv.listen(16)
    srv.setblocking(False)
    pid, master = _spawn(executable, args)

    def forward(signum, _frame):
        try:
            os.killpg(pid, signum)
        except OSError:
            pass

    for s in _SIGNALS:
        signal.signal(s, forward)
    sel = selectors.DefaultSelector()
    sel.register(master, selectors.EVENT_READ, "pty")
    sel.register(srv, selectors.EVENT_READ, "accept")
    outputs = set()
    buffers = {}  # input/new client socket -> pending bytes

    def drop(conn):
        outputs.discard(conn)
        buffers.pop(conn, None)
        try:
            sel.unregister(conn)
        except (KeyError, ValueError):
            pass
        conn.close()

    running = True
    while running:
        try:
            events = sel.select()
        except InterruptedError:
            continue
        for key, _ in events:
            if key.data == "pty":
                try:
                    data = os.read(master, 65536)
                except OSError as e:
                    if e.errno != errno.EIO:
                        raise
                    data = b""
                if not data:
                    running = False
                    break
                try:
                    os.write(1, data)
                except OSError:
                    pass
                for conn in list(outputs):
                    try:
                        conn.send(data)
                    except (BlockingIOError, OSError):
                        drop(conn)
            elif key.data == "accept":
                try:
                    conn, _ = srv.accept()
                except BlockingIOError:
                    continue
                # An abstract socket has no file permissions: only the agent's user (or root) may attach.
                creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
                if struct.unpack("3i", creds)[1] not in (os.getuid(), 0):
                    conn.close()
                    continue
                conn.setblocking(False)
                buffers[conn] = b""
                sel.register(conn, selectors.EVENT_READ, "client")
            else:
                conn = key.fileobj
                try:
                    chunk = conn.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    drop(conn)
                    continue
                if conn in outputs:
                    continue
                buf = buffers.get(conn, b"") + chunk
                if buf[:1] == b"O":
                    outputs.add(conn)
                    buffers.pop(conn, None)
                    continue
                if buf[:1] == b"I":
                    buf = buf[1:]
                while buf:  # input frames
                    kind = buf[:1]
                    if kind == b"D" and len(buf) >= 5:
                        n = struct.unpack(">I", buf[1:5])[0]
                        if len(buf) < 5 + n:
                            break
                        try:
                            os.write(master, buf[5:5 + n])
                        except OSError:
                            pass
                        buf = buf[5 + n:]
                    elif kind == b"W" and len(buf) >= 5:
                        rows, cols = struct.unpack(">HH", buf[1:5])
                        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
                        buf = buf[5:]
                    elif kind in (b"D", b"W"):
                        break
                    else:
                        drop(conn)
                        buf = b""
                        break
                if conn in buffers:
                    buffers[conn] = buf
    for conn in list(outputs) + list(buffers):
        drop(conn)
    srv.close()
    status = wait_status(pid)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
