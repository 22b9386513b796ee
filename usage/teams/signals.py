"""Signals billing listens to (usage never imports billing). All are sent inside the
transaction that changed the records, so that what billing keeps by team (paid, team
budgets, the audit trail) changes in the same transaction."""

from django.dispatch import Signal

# A team was created, renamed or merged, or a key moved. Arguments: account, instance (the
# Team or ApiKey), action ("team.create", "team.rename", "team.merge", "key.move"), user (or
# None), before and after (JSON-ready dicts or None).
team_changed = Signal()

# Every record, rollup row and key of the teams named `old_names` (compared case-insensitively)
# now carries `new_name`. Arguments: account, old_names (list[str]), new_name (str).
team_renamed = Signal()

# The records of one key from `since` (None: all of them) were re-attributed to other teams.
# Arguments: account, api_key_id (int), since (datetime | None).
key_usage_moved = Signal()
