"""Where the reference data of the tests is: SAP's AI API spec and KServe's and Knative's CRDs.

They are copied into the repository (``tests/data/reference``, with where each came from and its
licence), so that a clone anywhere runs the tests with nothing beside it.
"""

from __future__ import annotations

from pathlib import Path

REFERENCE_DIR = Path(__file__).resolve().parent / "data" / "reference"


def reference_dir() -> Path:
    return REFERENCE_DIR
