"""Teams as things: an account's teams, created and renamed in one place, and which team each
API key belonged to from when (the history of assignments).

Records and rollups keep the team's name (a string column, as before); this package is the
only code that changes it after capture: `services` renames, merges and moves keys, keeping
the records, both rollups and `ApiKey.team` (the key's current team) in step, and tells
billing through `signals` so that paid, team budgets and the audit trail follow.
Ingestion resolves a record's team through `resolve.TeamResolver`.
"""
