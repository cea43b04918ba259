"""User passwords: argon2id, hashed and checked off the event loop (each takes tens of ms)."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from control.config import PasswordCost

MIN_LENGTH = 10
MAX_LENGTH = 1024  # argon2 takes any length; this only bounds the work a request can ask for


class Passwords:
    def __init__(self, cost: PasswordCost) -> None:
        self._hasher = PasswordHasher(
            time_cost=cost.time_cost, memory_cost=cost.memory_kib, parallelism=cost.parallelism
        )
        # A hash to check against when the user does not exist, so the response takes as
        # long as for a wrong password and does not reveal which emails have accounts.
        self._decoy = self._hasher.hash("no user has this password")

    @staticmethod
    def problem(password: str) -> str | None:
        if len(password) < MIN_LENGTH:
            return f"the password must have at least {MIN_LENGTH} characters"
        if len(password) > MAX_LENGTH:
            return f"the password must have at most {MAX_LENGTH} characters"
        return None

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def check(self, stored: str | None, password: str) -> bool:
        def verify() -> bool:
            try:
                return self._hasher.verify(stored or self._decoy, password) and stored is not None
            except (VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(verify)
