"""mesos-nb: Apache Mesos re-made in Python, notebook first."""

__version__ = "1.12.0"
