"""The framework under the functions, as kopf's reactor is under its handlers: the bus (``bus``), the
one CloudEvents codec (``binding``), the one pull loop (``consumer``), the KV registries (``store``),
the function runner (``runner``), dead letters (``dead_letters``), the embedded nats-server
(``nats_server``), who may use NATS (``nats_auth``, ``nats_permissions``), and what every part counts
and logs with (``metrics``, ``logcontext``).
"""
