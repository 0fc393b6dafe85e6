"""Webhooks, signed the Standard Webhooks way: ``signatures`` (sign, verify, secrets), ``targets``
(where deliveries may go: the SSRF policy) and ``dispatcher`` (delivery of the platform's
announcements to subscribers); the HTTP routes for senders and subscriptions are
``zeroserve.gateway.webhooks``.
"""
