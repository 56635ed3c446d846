"""``mesos-nb``: run the services (master, agent, local) and operate a cluster.

Every option also reads ``MESOS_NB_<OPTION>`` (``--work-dir`` -> ``MESOS_NB_WORK_DIR``);
``--master`` defaults to ``$MESOS_NB_MASTER``, else ``127.0.0.1:5050``. Errors (bad flags,
bad resource strings, an unreachable master) print one sentence on stderr and exit 2.
See README.md in this folder for the modules and the data flow.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence

from mesos_nb.client import MesosClientError

from .errors import CLIError
from .options import ENV_PREFIX
from .parser import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    debug = bool(os.environ.get(ENV_PREFIX + "DEBUG"))
    try:
        args = build_parser().parse_args(argv)
        debug = debug or args.debug
        # Every client below (HttpClient, the SDK) reads these (mesos_nb.protocol.client_auth).
        if args.credential:
            os.environ[ENV_PREFIX + "CREDENTIAL"] = args.credential
        if args.ca_file:
            os.environ[ENV_PREFIX + "CA_FILE"] = args.ca_file
        return int(args.func(args) or 0)
    except (CLIError, MesosClientError) as e:
        text = str(e)
        if isinstance(e, MesosClientError) and e.status == 404:
            text = _not_a_master(getattr(args, "master", None)) or text
        print(f"mesos-nb: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 0
    except Exception as e:
        if debug:
            raise
        text = str(e).strip().splitlines()
        print(f"mesos-nb: {type(e).__name__}: {text[0] if text else 'unexpected error'}"
              f" (set MESOS_NB_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


def _not_a_master(master: str | None) -> str | None:
    """A 404 from the master's endpoints: say so when ``--master`` points at an agent."""
    if not master:
        return None
    from mesos_nb.client.http import DEFAULT
    from mesos_nb.client.master import master_url

    with contextlib.suppress(Exception):
        url = master_url(master)
        status, raw = DEFAULT.request(url + "/state", timeout=3)
        if status == 200:
            import json

            st = json.loads(raw)
            if isinstance(st, dict) and "master_hostname" in st and "slaves" not in st:
                where = st.get("master_hostname") or (st.get("flags") or {}).get("master")
                hint = f" (its master is on {where})" if where else ""
                return (f"{url} is an agent, not a master{hint}: point --master (or "
                        "$MESOS_NB_MASTER) at the master's HOST:PORT")
    return None


__all__ = ["CLIError", "build_parser", "main"]
