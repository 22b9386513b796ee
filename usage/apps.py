from django.apps import AppConfig


class UsageConfig(AppConfig):
    name = "usage"
    verbose_name = "Usage"

    def ready(self) -> None:
        from usage import checks, receivers  # noqa: F401  (registers the checks, connects the receivers)
