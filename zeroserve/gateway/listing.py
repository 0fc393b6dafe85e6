"""How the AI API's list routes filter, search and page, and the ``{count, resources}`` body they answer.

The query parameters are SAP's (``$top``, ``$skip``, ``$search``, ``$expand``, label selectors),
written as its spec writes them; ``/v2/lm`` and ``/v2/admin`` bound ``$top`` differently, so each
has its own. A selector or a comma list is read here once, and a route only says what it matches.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Query

from zeroserve.events import Label
from zeroserve.gateway.errors import ErrorAnswer

T = TypeVar("T")

_SELECTOR = re.compile(r"^(ext\.ai\.sap\.com/[\w.-]+)(!?=)([^ =,]+)$")
# The same, as the description states it: up to 10 expressions, comma-separated. ASCII word characters:
# what the description's readers (and pydantic's regex engine) take for \w differs beyond ASCII.
_EXPRESSION = r"ext\.ai\.sap\.com/[A-Za-z0-9_.-]+!?=[^ =,]+"
SELECTOR_PATTERN = rf"^{_EXPRESSION}(,{_EXPRESSION}){{0,9}}$"
SELECTOR_DESCRIPTION = ('"ext.ai.sap.com/<key>=<value>" or "ext.ai.sap.com/<key>!=<value>", up to 10, comma-separated '
                        '(a comma in a value: {comma})')

# /v2/lm's paging.
Top = Annotated[int, Query(alias="$top", ge=0, le=100000, description="Number of results to display")]
Skip = Annotated[int, Query(alias="$skip", ge=0, description="Number of results to skip")]
Search = Annotated[str | None, Query(alias="$search", pattern=r"^[^~]{1,80}$",
                                     description="Substring of the name (and, for artifacts, the description)")]
CaseInsensitive = Annotated[bool, Query(alias="searchCaseInsensitive")]
Expand = Annotated[Literal["scenario"] | None, Query(alias="$expand", description="Include the scenario")]

# /v2/admin's paging: no upper bound on $top, and $count says which count the answer carries.
AdminTop = Annotated[int | None, Query(alias="$top", ge=0)]
AdminSkip = Annotated[int, Query(alias="$skip", ge=0)]
AdminCount = Annotated[bool, Query(alias="$count", description="count: every match (true) or those in this page")]

# (key, wanted, value): ``key=value`` wants the label, ``key!=value`` wants it absent.
Selector = list[tuple[str, bool, str]]


def page(items: list[T], top: int, skip: int) -> list[T]:
    return items[skip : skip + top]


def listing(resources: list[dict[str, Any]], count: int | None = None) -> dict[str, Any]:
    return {"count": len(resources) if count is None else count, "resources": resources}


def search_matches(term: str | None, case_insensitive: bool, *texts: str | None) -> bool:
    if term is None:
        return True
    if case_insensitive:
        return any(term.lower() in text.lower() for text in texts if text)
    return any(term in text for text in texts if text)


def label_selector(text: str | None, field: str) -> Selector:
    """(key, wanted, value) for each of SAP's ``key=value`` / ``key!=value`` expressions."""
    if text is None:
        return []
    expressions = text.split(",")
    if len(expressions) > 10:
        raise ErrorAnswer(400, "BadRequest", f"query.{field}: at most 10 label expressions")
    selector = []
    for expression in expressions:
        match = _SELECTOR.match(expression)
        if match is None:
            raise ErrorAnswer(400, "BadRequest", f"query.{field}: {expression[:100]!r} is not "
                           "ext.ai.sap.com/<key>=<value> or ext.ai.sap.com/<key>!=<value>")
        selector.append((match[1], match[2] == "=", match[3].replace("{comma}", ",")))
    return selector


def labels_match(labels: Iterable[Label], selector: Selector) -> bool:
    pairs = {(label.key, label.value) for label in labels}
    return all(((key, value) in pairs) == wanted for key, wanted, value in selector)


def comma_list(text: str | None) -> list[str] | None:
    return None if text is None else [item for item in text.split(",") if item]
