from django.apps import AppConfig


class UsageConfig(AppConfig):
    name = "usage"
    verbose_name = "Usage"

    def ready(self) -> None:
        # Here, not at the top: Django imports this module before any app's models are loaded.
        from usage import checks, receivers  # noqa: F401  (registers the checks, connects the receivers)
        from usage.metrics import on_usage_recorded
        from usage.models import UsageRecord
        from usage.signals import usage_recorded

        usage_recorded.connect(on_usage_recorded, sender=UsageRecord, dispatch_uid="usage.count_ingested_records")
