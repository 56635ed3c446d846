"""Wire protocol: typed Mesos v1 messages, RecordIO framing, resource arithmetic."""
