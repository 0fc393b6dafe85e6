"""(being written)"""

from __future__ import annotations

from fastapi import APIRouter

from zeroserve.platform import Platform


def router(platform: Platform) -> APIRouter:
    return APIRouter()
