"""Catalog files: parsing, writing, the refreshed copy preferred, caching, and the checker."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from iacrun.orchestrator.errors import ConfigError, InputError
from iacrun.orchestrator.offers.catalog import load_catalog, shipped_catalog_path, user_catalog_dir
from iacrun.orchestrator.offers.catalog.check import check_catalog
from iacrun.orchestrator.offers.catalog.model import (
    Catalog,
    InstanceType,
    PriceRow,
    dump_catalog,
    parse_catalog,
)
from iacrun.orchestrator.offers.catalog.store import catalog_path, save_catalog


def tiny(cloud: str = "aws", price: float = 1.006) -> Catalog:
    return Catalog(
        cloud=cloud,
        as_of="2026-02-03",
        types={"g5.xlarge": InstanceType("g5.xlarge", 4, 16, "A10G", 1, 24, "nvidia", 250)},
        prices=[PriceRow("g5.xlarge", "us-east-1", price, 0.4)],
    )


def test_dump_and_parse_round_trip_one_row_a_line() -> None:
    text = dump_catalog(tiny())
    assert '\n"g5.xlarge":[4,16,"A10G",1,24,"nvidia",250,"x86"]' in text
    back = parse_catalog(json.loads(text))
    assert back.types == tiny().types and back.prices == tiny().prices


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(format=9), "format 9"),
        (lambda d: d.update(as_of="last week"), "YYYY-MM-DD"),
        (lambda d: d["types"].update({"x": [1, 2, None, 0, None, None, None, "sparc"]}), "arch"),
        (lambda d: d["prices"].append(["nope", "r", 1, None, 0]), "unknown instance type"),
        (lambda d: d["prices"].append(["g5.xlarge", "r", "cheap", None, 0]), "price row"),
    ],
)
def test_damaged_files_are_config_errors_that_say_what_is_wrong(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(dump_catalog(tiny()))
    mutate(data)
    with pytest.raises(ConfigError, match=message):
        parse_catalog(data, "/x/aws.json")


def test_refreshed_copy_is_preferred_and_reloaded_when_it_changes(isolated_home: Path) -> None:
    shipped = load_catalog("aws")
    assert shipped.path == str(shipped_catalog_path("aws"))
    target = save_catalog(tiny(price=1.5), user_catalog_dir())
    assert target == isolated_home / "catalog" / "aws.json"
    assert catalog_path("aws") == target
    first = load_catalog("aws")
    assert first.prices[0].price == 1.5
    assert load_catalog("aws") is first  # cached
    save_catalog(tiny(price=2.5), user_catalog_dir())
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert load_catalog("aws").prices[0].price == 2.5
    assert not list(target.parent.glob(".aws.*"))  # no temporary files left behind


def test_a_catalog_of_the_wrong_cloud_is_refused(tmp_path: Path) -> None:
    save_catalog(tiny(cloud="aws"), tmp_path)
    (tmp_path / "aws.json").rename(tmp_path / "azure.json")
    with pytest.raises(ConfigError, match="is for aws, not azure"):
        load_catalog("azure", tmp_path)


def test_unknown_clouds_are_input_errors() -> None:
    with pytest.raises(InputError, match="known clouds: aws, azure"):
        load_catalog("gcp")


def test_checker_reports_each_kind_of_inconsistency() -> None:
    bad = Catalog(
        cloud="aws",
        as_of="2026-01-01",
        types={
            "g5.xlarge": InstanceType("g5.xlarge", 4, 16, "A10G", 2, 24, "nvidia"),
            "m7i.large": InstanceType("m7i.large", 2, 16),
            "zz.large": InstanceType("zz.large", 2, 8),
            "m8g.large": InstanceType("m8g.large", 2, 8, arch="x86"),
            "p5.48xlarge": InstanceType("p5.48xlarge", 192, 2048, "H100", 8, 80, "nvidia"),
        },
        prices=[
            PriceRow("g5.xlarge", "us-east-1", 1.0, 1.2),
            PriceRow("g5.xlarge", "us-east-1", 1.0, None),
            PriceRow("m7i.large", "us-east-1", -1.0, None),
            PriceRow("zz.large", "us-east-1", 0.1, None),
            PriceRow("m8g.large", "us-east-1", 0.1, None),
        ],
    )
    problems = "\n".join(check_catalog(bad))
    assert "g5.xlarge: GPUs" in problems
    assert "m7i.large: 2 vCPUs / 16GB disagree" in problems
    assert "zz.large: not a family" in problems
    assert "m8g.large: arch x86" in problems
    assert "spot price 1.2 is not between" in problems
    assert "listed twice" in problems
    assert "on-demand price -1.0 is not positive" in problems
    assert "p5.48xlarge: has no price" in problems
