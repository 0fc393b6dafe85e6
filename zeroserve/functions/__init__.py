"""The platform user's room: one small function per event type, loaded by the runner from this directory.

The runner imports each ``*.py`` here by path (files starting with ``_``, like this one, are
skipped); this file makes the directory a package so that the functions ship in the wheel and
``make lint`` holds them to their contract: they use zeroserve's domain, never the gateway, the CLI
or a node.
"""
