"""Where deployments run: ``base`` is the Backend protocol the functions speak (apply, stop, delete,
watch), ``local`` runs replicas as processes on this machine, ``kserve`` applies InferenceServices
to a cluster.
"""
