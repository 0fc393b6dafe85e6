"""``python -m zeroserve.cli``: the ``zeroserve`` command without its installed script."""

from zeroserve.cli import app

app()
