"""Headless Chromium through Selenium, for the browser tests: a module
calls require_browser() at import (skipped, saying what is missing,
without selenium, chromium or chromedriver) and drives pages with
chromium()."""
import contextlib
import shutil

import pytest

from static_support import tool_env

CHROMIUM = (shutil.which('chromium') or shutil.which('chromium-browser') or
            shutil.which('google-chrome'))
CHROMEDRIVER = shutil.which('chromedriver')


def require_browser():
    """Skip the calling module unless a browser can be driven."""
    pytest.importorskip('selenium.webdriver',
                        reason='selenium is not installed (pip install '
                               'selenium)')
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip('chromium and chromedriver are needed (Debian: apt-get '
                    'install chromium chromium-driver); missing: %s' %
                    ', '.join(n for n, p in (('chromium', CHROMIUM),
                                             ('chromedriver', CHROMEDRIVER))
                              if not p),
                    allow_module_level=True)


@contextlib.contextmanager
def chromium():
    """A headless Chromium, quit on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ('--headless=new', '--no-sandbox', '--disable-gpu',
                '--disable-dev-shm-usage', '--no-first-run',
                '--no-default-browser-check', '--window-size=800,600',
                # pages in windows behind others run as if in front
                '--disable-background-timer-throttling',
                '--disable-renderer-backgrounding',
                '--disable-backgrounding-occluded-windows'):
        options.add_argument(arg)
    drv = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER,
                                           env=tool_env()),
                           options=options)
    drv.set_page_load_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()
