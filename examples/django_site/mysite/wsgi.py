"""The project's WSGI application:

    cd examples/django_site && lichen --static /static=static mysite.wsgi
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
application = get_wsgi_application()
