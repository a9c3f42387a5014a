"""API keys (stored as SHA-256 hashes), the admin bootstrap key, and per-key rate limiting."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import ApiKey, User

KEY_PREFIX = "tb_"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


async def user_for_key(session: AsyncSession, key: str) -> User | None:
    if not key or len(key) > 200:
        return None
    # one round trip on every authenticated request: the user through its key, joined
    return (await session.exec(
        select(User).join(ApiKey, col(ApiKey.user_id) == col(User.id))
        .where(ApiKey.key_hash == hash_key(key), ApiKey.revoked == False)  # noqa: E712
    )).first()


async def create_user(
    session: AsyncSession, *, email: str, is_admin: bool = False, key: str | None = None
) -> tuple[User, str]:
    """Create (or reuse) the user with `email` and give them a new key; returns (user, key)."""
    user = (await session.exec(select(User).where(User.email == email))).first()
    if user is None:
        user = User(email=email, is_admin=is_admin)
        session.add(user)
        await session.flush()
    elif is_admin and not user.is_admin:
        user.is_admin = True
        session.add(user)
    key = key or new_key()
    assert user.id is not None
    session.add(ApiKey(user_id=user.id, key_hash=hash_key(key), prefix=key[:8]))
    await session.flush()
    return user, key


async def ensure_admin_key(session: AsyncSession, key: str) -> None:
    """Make TASKBENCH_ADMIN_API_KEY a working admin key (idempotent)."""
    exists = (await session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))).first()
    if exists is None:
        await create_user(session, email="admin@taskbench.local", is_admin=True, key=key)


class RateLimiter:
    """A token bucket per key: `per_minute` requests, refilled continuously."""

    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(max(per_minute, 1))
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> float:
        """Take one token; returns 0 when allowed, else the seconds until one is free."""
        now = time.monotonic()
        with self._lock:
            tokens, stamp = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - stamp) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate if self.rate else 60.0
