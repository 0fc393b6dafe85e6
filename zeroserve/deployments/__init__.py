"""Deployments: the lifecycle (statuses, allowed moves, the stop/delete/reconfigure guards, the
projection of status events into the record, the one writer of a status), the deployment logs,
ttl expiry, the restore after a restart and the watcher that turns what the backend notices into
status changes.
"""
