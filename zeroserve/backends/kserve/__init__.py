"""The kserve backend: deployments as KServe InferenceServices on a Kubernetes cluster (``backend``),
and the leader election that keeps one watcher of them active per cluster (``leader_election``).
"""
