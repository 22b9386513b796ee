"""The model catalogue: which models the provider lists for an account, since when, with
what context length, and what the provider says they cost.

`usage` owns what the catalogue stores and shows (`models`, `services`, `selectors`);
fetching it from the provider is `billing.model_sync`'s job, which hands each listing to
`services.apply_listing`, the way the provider sync hands log rows to `record_usage`.
"""
