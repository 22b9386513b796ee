import os
import warnings

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "toki_dashboard.settings")

# WhiteNoise serves static files with synchronous iterators, which Django's ASGI handler
# wraps (correctly) with a warning per file; the files are small and cached by browsers.
warnings.filterwarnings("ignore", message="StreamingHttpResponse must consume synchronous iterators")

application = get_asgi_application()
