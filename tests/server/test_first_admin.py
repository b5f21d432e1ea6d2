"""Servers starting at once on one database make the first admin once: the others find it
made and start too (no `a user named 'admin' exists already`)."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import pytest

from iacrun.orchestrator.registry.database import Database
from iacrun.server.accounts import Accounts, Role, User


@pytest.mark.parametrize("admin_token", [None, "iacrun_given-by-the-operator"])
def test_two_servers_starting_at_once_make_one_first_admin(
    registry_target: str, monkeypatch: pytest.MonkeyPatch, admin_token: str | None
) -> None:
    # each "server" has its own connection; both check for an admin before either makes one,
    # unless something keeps the second from looking until the first is done
    both_checked = threading.Barrier(2)
    create_user = Accounts.create_user

    def racing(self: Accounts, name: str, role: Role) -> User:
        with contextlib.suppress(threading.BrokenBarrierError):
            both_checked.wait(timeout=3)  # the other thread is let in now, or kept out
        return create_user(self, name, role)

    monkeypatch.setattr(Accounts, "create_user", racing)
    results: list[str | None] = []
    failures: list[BaseException] = []

    def start() -> None:
        db = Database(str(registry_target))
        try:
            results.append(Accounts(db).bootstrap(admin_token))
        except BaseException as exc:  # what made a server fail to start
            failures.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    made = [token for token in results if token is not None]
    assert len(results) == 2 and len(made) == (0 if admin_token else 1)
    db = Database(str(registry_target))
    accounts = Accounts(db)
    assert [(u.name, u.role) for u in accounts.users()] == [("admin", "admin")]
    assert len(accounts.tokens()) == 1
    secret = admin_token or made[0]
    assert secret is not None
    principal = accounts.authenticate(secret)
    assert principal is not None and principal.is_admin
    db.close()


def test_serialize_is_for_inside_a_transaction(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "registry.db"))
    with pytest.raises(AssertionError):
        db.serialize(1)
    with db.transaction() as inside:
        inside.serialize(1)
    db.close()
