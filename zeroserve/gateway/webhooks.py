"""(being written)"""

from __future__ import annotations

from fastapi import APIRouter

from zeroserve.platform import Platform


def inbound(platform: Platform) -> APIRouter:
    """Public routes: each call is verified by its Standard Webhooks signature instead of a token."""
    return APIRouter()


def subscriptions(platform: Platform) -> APIRouter:
    return APIRouter()
