"""The gateway, zeroserve's HTTP face: one module-level router per resource (``scenarios``,
``artifacts``, ``configurations``, ``deployments``, ``logs``, ``sse``, ``resource_groups``,
``object_store_secrets``, ``clients``, ``subscriptions``, ``webhooks``, ``ingress``, ``inference``,
``oauth``, ``metrics``, ...), assembled by ``app``; ``security`` says who calls and in which group,
``errors`` answers in SAP's error body.
"""
