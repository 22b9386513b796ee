import gc
import os
import warnings
from typing import cast

from django.core.asgi import get_asgi_application

from toki_dashboard.config import serve_requests

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "toki_dashboard.settings")
# Before the settings load: this process's requests borrow pooled database connections.
serve_requests()

# WhiteNoise serves static files with synchronous iterators, which Django's ASGI handler
# wraps (correctly) with a warning per file; the files are small and cached by browsers.
warnings.filterwarnings("ignore", message="StreamingHttpResponse must consume synchronous iterators")

django_application = get_asgi_application()

# The logging proxy answers /proxy/… before Django's request handling (see usage.proxy.app).
from toki_dashboard.body_limit import ASGIApp, limit_body  # noqa: E402
from usage.proxy.app import with_proxy  # noqa: E402  (needs the apps loaded by get_asgi_application)

application = with_proxy(limit_body(cast(ASGIApp, django_application)))

# Everything loaded so far (Django, the apps, the URL conf) lives as long as the process:
# kept out of the collector's full passes (toki_dashboard/collector.py says why not more).
gc.freeze()
