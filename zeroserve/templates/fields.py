"""The field types SAP's YAML documents share (strings that YAML would read as numbers or
booleans, Kubernetes quantities, label values) and the one wording of their validation errors.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, StringConstraints, ValidationError

# The Kubernetes resource.Quantity pattern, as the CRD states it for requests and limits.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"


def _text(value: object) -> object:
    """YAML turns `1.0` or `true` into numbers and booleans where SAP means strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


Text = Annotated[str, BeforeValidator(_text)]
Quantity = Annotated[str, BeforeValidator(_text), StringConstraints(pattern=QUANTITY_PATTERN)]
LabelValue = Annotated[str, StringConstraints(max_length=63, pattern=LABEL_VALUE_PATTERN)]


def problems(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or '(document)'}: {problem['msg']}"
        for problem in error.errors(include_url=False)
    )
