"""Minimal Django settings for the end-to-end tests: no database."""

SECRET_KEY = "lichen-tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "djangoapp.urls"
INSTALLED_APPS = []
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
DATABASES = {}
USE_TZ = True
DEFAULT_CHARSET = "utf-8"
LOGGING_CONFIG = None
