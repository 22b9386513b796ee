from django.apps import AppConfig


class UsageConfig(AppConfig):
    name = "usage"
    verbose_name = "Usage"

    def ready(self) -> None:
        from usage import receivers  # noqa: F401  (connects the signal receivers)
