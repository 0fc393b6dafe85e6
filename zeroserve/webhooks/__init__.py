"""Webhooks, signed the Standard Webhooks way: ``signatures`` (sign, verify, secrets), ``targets``
(where deliveries may go: the SSRF policy), ``dispatcher`` (delivery of the platform's
announcements to subscribers), ``sources`` (what an S3, MLflow or generic sender's payload means
as events) and ``replays`` (the webhook ids already acted on); the HTTP routes for senders and
subscriptions are in ``zeroserve.gateway``.
"""
