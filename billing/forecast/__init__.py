"""When balances run out, and what plans will leave unused: the forecast.

Two halves, so the arithmetic is testable on plain series (the package's modules: `model`
the vocabulary, `burn` the fitting, `simulation` the simulation, `account` the reads and
putting it together, `history` the balance history of the chart):

- **Reads** (`account_forecast`): daily token and cost consumption per model from the
  hourly rollups (aggregated in the database, complete days in DASHBOARD_TIME_ZONE),
  the plans not yet expired with what they have left (`selectors.plan_statuses`) and
  the wallet balance.
- **Pure computation** (`forecast_from_inputs`):
  1. *Burn model.* The daily total is divided by a weekday factor once there are
     `WEEKLY_MIN_DAYS` of history (a weekday pattern needs at least three of each
     weekday). The trend is a regression with weights halving every
     `LONG_HALF_LIFE_DAYS`, shrunk towards zero by 1 − 4/t² (dropped when it is within
     two standard errors of zero: noise is not extrapolated), and damped when projected,
     so it is followed for a few weeks and not forever. The level now is the mean of the
     detrended days weighted by a blend of `HALF_LIFE_DAYS` (follows recent changes) and
     `LONG_HALF_LIFE_DAYS` (is not thrown about by a few noisy days).
     Each model takes its recent (equally weighted) share of the total, with its own
     cost per token and its ratios of uncached and completion tokens.
  2. *Simulation.* From `now`, in steps cut at local midnights and at every plan's
     start and expiry, each model's projected tokens burn the plans that cover it in
     the allocation engine's order (priority, then sooner expiry, then earlier start);
     what no plan covers is charged to the wallet at the model's cost per token. This
     gives the token run-out (the moment the plans that cover the models in use have
     nothing left: used up or expired), the wallet run-out, and per plan the tokens
     left at its expiry.
  3. *Band.* The relative spread of the consumption over `h` days combines the noise of
     the days to come (`cv`, the weighted spread of the residuals, over √h), the
     uncertainty of the level (cv/√n_eff) and that of the trend (its standard error times
     the days it is followed). That spread is calibrated on the model's own errors: the
     model is refitted at earlier origins of the history and, per horizon (1, 3, 7, 14
     days), scaled so that 80% of its past errors fall inside ±z·spread. The simulation
     is run again with the consumption scaled by 1 ± that half-width; high consumption
     gives the earliest run-out and the fewest unused tokens.

Everything returned is in UTC; `None` means "does not run out within the horizon".
"""

from __future__ import annotations

from billing.forecast.account import account_forecast, forecast_from_inputs, read_history, read_inputs
from billing.forecast.burn import fit_burn, weekday_factors
from billing.forecast.history import BalancePoint, ReportedPoint, balance_history, reported_balances
from billing.forecast.model import (
    AccountForecast,
    BurnModel,
    DayUsage,
    ForecastInputs,
    ModelMix,
    PlanForecast,
    PlanState,
    ProjectedPoint,
    RunOut,
)
from billing.forecast.simulation import Simulation, simulate

__all__ = [
    "AccountForecast",
    "BalancePoint",
    "BurnModel",
    "DayUsage",
    "ForecastInputs",
    "ModelMix",
    "PlanForecast",
    "PlanState",
    "ProjectedPoint",
    "ReportedPoint",
    "RunOut",
    "Simulation",
    "account_forecast",
    "balance_history",
    "fit_burn",
    "forecast_from_inputs",
    "read_history",
    "read_inputs",
    "reported_balances",
    "simulate",
    "weekday_factors",
]
