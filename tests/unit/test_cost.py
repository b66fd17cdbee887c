"""The cost model (efsqlite.client.cost): line items, the documents generated from it, the goal."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from efsqlite.client import cost, costdoc, prices, usage

REPO = Path(__file__).resolve().parents[2]
MVP = cost.Load(gb=1, writes=100_000, reads=1_000_000)


def lines(bill: cost.Bill) -> dict[str, cost.LineItem]:
    return {f"{item.service}: {item.item}": item for item in bill.items}


def test_the_mvp_month_at_the_defaults_is_at_most_a_dollar_fifty() -> None:
    # The product's promise (README, docs/cost.md): the goal a default change must keep
    assert cost.bill(MVP).total <= 1.50


def test_docs_cost_md_is_the_models_output() -> None:
    # GIVEN docs/cost.md, generated with `efsqlite cost --markdown > docs/cost.md`
    # THEN it is exactly what the model prints now (regenerate it after changing the model)
    assert (REPO / "docs" / "cost.md").read_text(encoding="utf-8") == costdoc.document()


def test_the_readme_quotes_the_models_mvp_month() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert costdoc.readme_claim() in readme
    assert "cents a month" not in readme


def test_every_line_is_quantity_times_rate_and_the_total_their_sum() -> None:
    bill = cost.bill(MVP)
    assert bill.items and all(item.basis for item in bill.items)
    assert math.isclose(bill.total, sum(i.quantity * i.rate for i in bill.items))
    # AND every rate is one of the dated price table's
    assert {i.rate for i in bill.items} <= set(prices.US_EAST_1.values())


def test_the_choices_add_and_remove_the_lines_they_should() -> None:
    base = lines(cost.bill(MVP))
    assert not any("Elastic" in name for name in base)
    elastic = lines(cost.bill(cost.with_options(MVP, throughput="elastic")))
    assert elastic["EFS: Elastic throughput, read"].monthly > 0
    assert elastic["EFS: Elastic throughput, write"].monthly > 0
    metrics = lines(cost.bill(cost.with_options(MVP, custom_metrics=True)))
    assert metrics["CloudWatch: writer custom metrics"].monthly == pytest.approx(7 * 0.30)
    assert len(cost.WRITER_METRICS) == 7
    no_backups = lines(cost.bill(cost.with_options(MVP, backup_days=0)))
    assert not any("Backup" in name for name in no_backups)
    one_zone = cost.bill(cost.with_options(MVP, storage="one-zone")).total
    assert one_zone < cost.bill(MVP).total
    detailed = lines(cost.bill(cost.with_options(MVP, detailed_alarms=True)))
    assert detailed["CloudWatch: alarms"].quantity == base["CloudWatch: alarms"].quantity + 2
    platform = lines(cost.bill(cost.with_options(MVP, platform_logs=True)))
    assert (
        platform["CloudWatch: logs ingested"].quantity > base["CloudWatch: logs ingested"].quantity
    )


def test_snapshot_reads_of_a_big_busy_database_are_flagged_on_bursting() -> None:
    # GIVEN 100 GB written 10 M times a month, read through snapshots copied whole
    load = cost.Load(
        gb=100, writes=10_000_000, reads=100_000_000, read_mode="snapshot", snapshot_patch=False
    )
    # THEN bursting credits cannot carry it, and the bill says so
    assert any("run out" in note for note in cost.bill(load).notes)
    # AND on Elastic the copies are the bill
    elastic = lines(cost.bill(cost.with_options(load, throughput="elastic")))
    assert elastic["EFS: Elastic throughput, read"].monthly > 1000


def test_patched_snapshot_refreshes_cost_what_changed_not_the_file() -> None:
    # GIVEN the same big busy database read through snapshots, on Elastic throughput
    load = cost.Load(
        gb=100, writes=10_000_000, reads=100_000_000, read_mode="snapshot", throughput="elastic"
    )
    item = "EFS: Elastic throughput, read"
    patched = lines(cost.bill(load))[item]
    full = lines(cost.bill(cost.with_options(load, snapshot_patch=False)))[item]
    # THEN patching reads what the commits wrote, a small fraction of copying 100 GB at
    # every refresh, and it does not grow with the database; a full copy does
    assert usage.MEASURED["query"]["snapshot_patch_after_write"]["metered_bytes"] > 0
    assert patched.monthly < full.monthly / 100
    twice = cost.with_options(load, gb=200)
    assert lines(cost.bill(twice))[item].quantity == pytest.approx(patched.quantity)
    full_twice = lines(cost.bill(cost.with_options(twice, snapshot_patch=False)))[item]
    assert full_twice.quantity > 1.9 * full.quantity
    assert "patched" in cost.bill(load).name


def test_the_comparators_price_the_same_load() -> None:
    dynamo, aurora = cost.compare(MVP)
    assert dynamo.name.startswith("DynamoDB") and aurora.name.startswith("Aurora")
    # Aurora Serverless v2 keeps half an ACU up all month whatever the load
    assert aurora.total > 0.5 * 730 * prices.US_EAST_1["aurora_acu_hour"]


@pytest.mark.parametrize(
    "load",
    [
        cost.Load(gb=-1, writes=1, reads=1),
        cost.Load(gb=1, writes=-1, reads=1),
        cost.Load(gb=1, writes=1, reads=1, commands_per_message=0),
        cost.Load(gb=1, writes=1, reads=1, region="mars-1"),
    ],
)
def test_a_load_the_model_cannot_price_is_refused(load: cost.Load) -> None:
    with pytest.raises(cost.CostModelError):
        cost.bill(load)


def test_the_usage_figures_come_from_a_dated_benchmark_run() -> None:
    measured = usage.MEASURED
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", measured["measured_at"])
    assert measured["command"].startswith("python bench/run.py")
    for size in ("1", "10"):
        commit = measured["commit"][size]
        assert commit["metered_bytes"] == pytest.approx(
            commit["metered_read_bytes"] + commit["metered_write_bytes"]
        )
        assert commit["modelled_ms"] > 0
    assert measured["ledger_bytes_per_command"] > 0


def efsqlite(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "efsqlite", *args], capture_output=True, text=True, timeout=120
    )


def test_the_cli_prints_the_itemized_bill_as_json() -> None:
    done = efsqlite("cost", "--gb", "1", "--writes", "100000", "--reads", "1000000", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["efsqlite"]["total"] == pytest.approx(cost.bill(MVP).total, abs=1e-4)
    assert {i["item"] for i in report["efsqlite"]["items"]} >= {"storage (regional)"}
    assert [c["name"] for c in report["compared"]] == [b.name for b in cost.compare(MVP)]
    assert report["prices_read_on"] == prices.READ_ON


@pytest.mark.parametrize(
    "args",
    [
        ("--gb", "-1"),
        ("--gb", "nan"),
        ("--gb", "inf"),
        ("--writes", "1.5"),
        ("--reads", "many"),
        ("--commands-per-message", "0"),
        ("--read-mode", "cached"),
    ],
)
def test_bad_cli_values_are_one_line_usage_errors(args: tuple[str, ...]) -> None:
    done = efsqlite("cost", *args)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_an_unpriced_region_is_one_line() -> None:
    done = efsqlite("cost", "--region", "eu-west-1")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "efsqlite: error: no price table for 'eu-west-1' (the model has us-east-1)"
    )
