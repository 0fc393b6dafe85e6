"""The platform user's room: one small function per event type, loaded by the runner from this directory.

The runner imports each ``*.py`` here by path (files starting with ``_``, like this one, are
skipped); this file makes the directory a package only so that ``make lint`` can hold the
functions to their contract: they use zeroserve's domain, never the gateway, the CLI or a node.
"""
