"""What of a URL may be shown in a log line or an error message: never a password in it, nor a
query string, which may be a pre-signed URL's signature. NATS, webhook and artifact URLs all pass here.
"""

from __future__ import annotations

from urllib.parse import urlparse


def redact(url: str) -> str:
    """``url`` without what may be a secret: a password in it, a (pre-signed) query string. A NATS
    cluster's servers, comma-separated, each lose theirs."""
    servers = url.split(",")
    if len(servers) > 1 and all("://" in server for server in servers):
        return ",".join(redact(server.strip()) for server in servers)
    try:
        parsed = urlparse(url)
    except ValueError:  # unreadable: nothing of it past the scheme is shown
        return f"{url.partition('://')[0][:20]}://..."
    netloc = parsed.netloc
    if parsed.password is not None:
        netloc = netloc.replace(f":{parsed.password}@", ":***@", 1)
    return parsed._replace(netloc=netloc, query="***" if parsed.query else "").geturl()
