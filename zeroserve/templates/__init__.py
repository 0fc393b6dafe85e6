"""Serving templates and resource plans, and their rendering into one checked KServe InferenceService
per deployment: ``serving`` and ``plans`` load what the operator gives, ``placeholders`` fills values
in safely, ``render`` builds the object and ``validation`` checks it against the CRD's schema.
"""
