"""Serving on this machine: the activator that holds requests until a replica is ready, the
autoscaler that starts and stops replicas, the replica processes themselves (forked from the fork
server, with their GPUs), and the runtimes that run inside them and know nothing of the rest."""
