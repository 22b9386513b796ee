from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        from billing import receivers  # noqa: F401  (connects the signal receivers)
        from billing.paid import RollupPaidSource
        from usage.money import register_paid_source

        # usage shows paid beside usage value without importing billing: it asks this source.
        register_paid_source(RollupPaidSource())
