"""Where the shared reference data is (SAP's AI API spec, KServe's and Knative's CRDs).

It lives beside the repository, in ``../shared/reference``, not in it. A clone made elsewhere (a
CI checkout in a temporary directory) finds it beside the repository it was cloned from, or where
``ZEROSERVE_REFERENCE_DIR`` says; without it the tests that need it fail saying so.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]


def reference_dir() -> Path:
    candidates = [Path(os.environ["ZEROSERVE_REFERENCE_DIR"])] if os.environ.get("ZEROSERVE_REFERENCE_DIR") else []
    candidates.append(REPOSITORY.parent / "shared" / "reference")
    origin = subprocess.run(["git", "-C", str(REPOSITORY), "config", "--get", "remote.origin.url"],
                            capture_output=True, text=True, check=False).stdout.strip()
    if origin and "://" not in origin and ":" not in origin.split("/")[0]:  # a local path, not a server
        candidates.append(Path(origin).resolve().parent / "shared" / "reference")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no shared reference data in {', '.join(map(str, candidates))}: "
                            "set ZEROSERVE_REFERENCE_DIR to the shared/reference directory")
