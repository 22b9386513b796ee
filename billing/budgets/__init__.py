"""Budgets on an account, a team, an API key or models: periods, spend, alerts and enforcement."""
