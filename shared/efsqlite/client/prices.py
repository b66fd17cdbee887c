"""AWS list prices the cost model uses (:mod:`efsqlite.client.cost`): dated, with sources.

Public on-demand list prices, no free tier and no discounts, as read from AWS's pricing pages on
:data:`READ_ON`. They are inputs, not measurements: check them against the pages below before
you rely on a total, and compare with Cost Explorer after a month in production.

DO add a Region as a whole table (every key of :data:`US_EAST_1`); DON'T scale one Region's
prices by a factor: AWS prices each service per Region.
"""

from __future__ import annotations

from types import MappingProxyType

#: When the prices below were read from AWS's pricing pages.
READ_ON = "2026-11-28"

#: Where each group of prices comes from.
SOURCES: MappingProxyType[str, str] = MappingProxyType(
    {
        "efs": "https://aws.amazon.com/efs/pricing/",
        "backup": "https://aws.amazon.com/backup/pricing/",
        "lambda": "https://aws.amazon.com/lambda/pricing/",
        "sqs": "https://aws.amazon.com/sqs/pricing/",
        "cloudwatch": "https://aws.amazon.com/cloudwatch/pricing/",
        "dynamodb": "https://aws.amazon.com/dynamodb/pricing/on-demand/",
        "aurora": "https://aws.amazon.com/rds/aurora/pricing/",
        "kms": "https://aws.amazon.com/kms/pricing/",
    }
)

#: us-east-1, USD. Storage per GB-month, transfer per GB, requests per million unless named.
US_EAST_1: MappingProxyType[str, float] = MappingProxyType(
    {
        "efs_standard_gb_month": 0.30,
        "efs_one_zone_gb_month": 0.16,
        "efs_elastic_read_gb": 0.03,
        "efs_elastic_write_gb": 0.06,
        "backup_efs_warm_gb_month": 0.05,
        "lambda_arm_gb_second": 0.0000133334,
        "lambda_requests_million": 0.20,
        "sqs_fifo_requests_million": 0.50,
        "kms_requests_10k": 0.03,
        "cloudwatch_alarm_month": 0.10,
        "cloudwatch_metric_month": 0.30,
        "cloudwatch_logs_ingest_gb": 0.50,
        "cloudwatch_logs_store_gb_month": 0.03,
        "dynamodb_write_million": 0.625,
        "dynamodb_read_million": 0.125,
        "dynamodb_storage_gb_month": 0.25,
        "aurora_acu_hour": 0.12,
        "aurora_storage_gb_month": 0.10,
        "aurora_io_million": 0.20,
        "rds_data_api_million": 0.35,
    }
)

#: The Regions the model has prices for.
REGIONS: MappingProxyType[str, MappingProxyType[str, float]] = MappingProxyType(
    {"us-east-1": US_EAST_1}
)
