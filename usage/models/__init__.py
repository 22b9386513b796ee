"""The usage app's models, one module a concern (docs/architecture.md, Data model).

Every model and the names migrations and other apps use are re-exported here, so
`usage.models.<Name>` keeps working; the modules of this package import each other
directly, never this package.
"""

from usage.catalogue.models import CatalogueModel, CatalogueSync
from usage.import_jobs.models import ImportJob, ImportRejection
from usage.models.accounts import Account, ApiKey, ApiToken, Membership, Provider, TokenScope, dashboard_time_zone
from usage.models.amounts import CURRENCY_CODE, MONEY, TOTAL_MONEY, DecimalSize
from usage.models.dead_letters import DeadLetter
from usage.models.estimator_fits import EstimatorFit
from usage.models.identity import CallKey, CallSighting, RegisteredRequest
from usage.models.language import UserLanguage
from usage.models.parameters import AcceptedParameter
from usage.models.prices import ModelPrice, PriceSource, RepricingRun
from usage.models.rates import ExchangeRate, RateSource
from usage.models.records import CostSource, ErrorCause, RawRetention, RecordSource, TokensSource, UsageRecord
from usage.models.rollups import DailyUsage, HourlyUsage, LatencyHistogram, UsageTotals
from usage.teams.models import KeyTeamAssignment, Team, TeamRelabel

__all__ = [
    "CURRENCY_CODE",
    "MONEY",
    "TOTAL_MONEY",
    "AcceptedParameter",
    "Account",
    "ApiKey",
    "ApiToken",
    "CallKey",
    "CallSighting",
    "CatalogueModel",
    "CatalogueSync",
    "CostSource",
    "DailyUsage",
    "DeadLetter",
    "DecimalSize",
    "ErrorCause",
    "EstimatorFit",
    "ExchangeRate",
    "HourlyUsage",
    "ImportJob",
    "ImportRejection",
    "KeyTeamAssignment",
    "LatencyHistogram",
    "Membership",
    "ModelPrice",
    "PriceSource",
    "Provider",
    "RateSource",
    "RawRetention",
    "RecordSource",
    "RegisteredRequest",
    "RepricingRun",
    "Team",
    "TeamRelabel",
    "TokenScope",
    "TokensSource",
    "UsageRecord",
    "UsageTotals",
    "UserLanguage",
    "dashboard_time_zone",
]
