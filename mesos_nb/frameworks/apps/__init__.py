"""mesos-nb's built-in services (apps) and jobs framework; see README.md in this folder.

Run it with ``python -m mesos_nb.frameworks.apps --master HOST:PORT --state DIR``; talk to it
with :mod:`mesos_nb.frameworks.apps.client`.
"""
