"""Lambda's reservation rule against account quotas (efsqlite.client.preflight)."""

from __future__ import annotations

import pytest
from efsqlite.client.preflight import AccountConcurrency, concurrency_findings


@pytest.mark.parametrize(
    ("limit", "unreserved", "reservable"),
    [(10, 10, 0), (50, 50, 0), (150, 150, 50), (1000, 1000, 900), (1000, 120, 20), (1000, 50, 0)],
)
def test_lambda_keeps_100_unreserved_or_the_whole_small_quota(
    limit: int, unreserved: int, reservable: int
) -> None:
    assert AccountConcurrency(limit, unreserved).reservable == reservable


@pytest.mark.parametrize("limit", [10, 50])
def test_a_new_account_is_told_to_turn_reservations_off(limit: int) -> None:
    # GIVEN a new account's quota, nothing reserved yet
    [finding] = concurrency_findings(AccountConcurrency(limit, limit))
    # THEN the deploy would fail, and the fix is the one documented parameter
    assert not finding.ok
    assert "would fail" in finding.message and f"quota is {limit}" in finding.message
    assert "ReserveConcurrency=false" in finding.fix
    # AND with that parameter set, the same account passes
    [then] = concurrency_findings(AccountConcurrency(limit, limit), reserve=False)
    assert then.ok and not then.fix


def test_a_quota_just_short_is_offered_a_smaller_reader_reservation() -> None:
    # GIVEN 150 executions: 50 reservable, the template's 1 + 50 do not fit
    [finding] = concurrency_findings(AccountConcurrency(150, 150))
    # THEN the reader's reservation that fits is named
    assert not finding.ok
    assert "ReaderReservedConcurrency=49" in finding.fix
    assert concurrency_findings(AccountConcurrency(150, 150), reader=49)[0].ok


def test_a_default_account_passes() -> None:
    [finding] = concurrency_findings(AccountConcurrency(1000, 1000))
    assert finding.ok and "reserves 51 of 900" in finding.message


def test_an_update_counts_the_stacks_own_reservations_back() -> None:
    # GIVEN an account whose unreserved count already excludes the stack's 51
    account = AccountConcurrency(151, 100)
    # THEN a first deploy's arithmetic would fail, an update's passes
    assert not concurrency_findings(account)[0].ok
    assert concurrency_findings(account, reserved_by_stack=51)[0].ok


def test_no_reservations_on_a_big_account_is_advised_against() -> None:
    # GIVEN ReserveConcurrency=false where readers could pass EFS's lock limit
    [finding] = concurrency_findings(AccountConcurrency(1000, 1000), reserve=False)
    # THEN it passes, with advice to reserve
    assert finding.ok and "512 locks" in finding.message
    assert "ReserveConcurrency=true" in finding.fix
