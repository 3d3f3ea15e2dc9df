"""A real browser (headless Chromium through Selenium) loads a page from
lichen's static directory: its CSS applies, its scripts run (a classic one,
a module -- which the browser refuses under a wrong Content-Type -- and one
that exists only gzip-compressed as far as the browser can tell), and its
PNG decodes.

Skipped only when selenium, chromium or chromedriver is missing."""
import gzip
import time

import pytest

from static_support import MarkerApp, tiny_png
from browser_support import chromium, require_browser
from support import wait_for

pytestmark = pytest.mark.timeout(120)

require_browser()

PAGE = b'''<!doctype html>
<html><head><meta charset="utf-8"><title>before</title>
<link rel="stylesheet" href="/static/css/site.css">
<script src="/static/js/classic.js"></script>
<script type="module" src="/static/js/mod.mjs"></script>
<script src="/static/js/zipped.js"></script>
</head><body>
<div id="box">styled box</div>
<p id="classic">classic did not run</p>
<p id="module">module did not run</p>
<p id="zipped">zipped did not run</p>
<img id="img" src="/static/img/dot.png" alt="dot">
</body></html>
'''
CSS = b'''#box { color: rgb(1, 2, 3); width: 123px;
        background-color: rgb(10, 20, 30); }
'''
CLASSIC = b'''document.title = "classic ran";
document.addEventListener("DOMContentLoaded", function () {
  document.getElementById("classic").textContent = "classic ran";
});
'''
MODULE = b'''document.getElementById("module").textContent = "module ran";
'''
ZIPPED_IDENTITY = b'''document.addEventListener("DOMContentLoaded", function () {
  document.getElementById("zipped").textContent = "identity ran";
});
'''
ZIPPED_GZ = gzip.compress(b'''
document.addEventListener("DOMContentLoaded", function () {
  document.getElementById("zipped").textContent = "gzip ran";
});
''')


@pytest.fixture
def browser():
    with chromium() as drv:
        yield drv


@pytest.fixture
def site(tmp_path):
    root = tmp_path / 'public'
    for rel, data in {
        'index.html': PAGE,
        'css/site.css': CSS,
        'js/classic.js': CLASSIC,
        'js/mod.mjs': MODULE,
        'js/zipped.js': ZIPPED_IDENTITY,
        'js/zipped.js.gz': ZIPPED_GZ,
        'img/dot.png': tiny_png(3, 2, (0, 128, 255)),
    }.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (tmp_path / 'secret.txt').write_bytes(b'not for the browser\n')
    return root


def _load(browser, url):
    browser.get(url)
    assert wait_for(lambda: browser.execute_script(
        'return document.readyState === "complete" && '
        'document.getElementById("img").complete && '
        'document.getElementById("module").textContent === "module ran"'),
        10), browser.page_source[:2000]


def test_page_css_js_module_gzip_png_in_chromium(serve, site, browser,
                                                 tmp_path):
    app = MarkerApp()
    log = tmp_path / 'access.log'
    srv = serve(app, static={'/static': str(site)}, access_log=str(log))
    url = 'http://127.0.0.1:%d/static/index.html' % srv.address[1]
    _load(browser, url)

    js = browser.execute_script
    # the stylesheet applied
    assert js('return getComputedStyle(document.getElementById("box"))'
              '.color') == 'rgb(1, 2, 3)'
    assert js('return getComputedStyle(document.getElementById("box"))'
              '.backgroundColor') == 'rgb(10, 20, 30)'
    assert js('return getComputedStyle(document.getElementById("box"))'
              '.width') == '123px'
    # the classic script and the module ran (a module only runs when its
    # Content-Type is a JavaScript type)
    assert browser.title == 'classic ran'
    assert js('return document.getElementById("classic").textContent') == \
        'classic ran'
    assert js('return document.getElementById("module").textContent') == \
        'module ran'
    # Chromium always accepts gzip: it got the .gz sibling and decoded it
    assert js('return document.getElementById("zipped").textContent') == \
        'gzip ran'
    # the image decoded
    assert js('return document.getElementById("img").naturalWidth') == 3
    assert js('return document.getElementById("img").naturalHeight') == 2

    # no static request reached the application (a favicon request may)
    assert [p for p in app.paths if p.startswith('/static')] == []

    def lines():
        return log.read_text().splitlines() if log.exists() else []
    assert wait_for(lambda: len([l for l in lines() if '/static/' in l]) >= 6,
                    3), lines()
    for name in ('index.html', 'css/site.css', 'js/classic.js', 'js/mod.mjs',
                 'js/zipped.js', 'img/dot.png'):
        assert any('GET /static/%s HTTP/1.1" 200 ' % name in l
                   for l in lines()), (name, lines())


def test_reload_revalidates_with_304_then_gets_a_replaced_file(
        serve, site, browser, tmp_path):
    """A reload revalidates the page (If-None-Match / If-Modified-Since):
    lichen answers 304 and the page still works from the browser's cache;
    a stylesheet renamed into place is served new (after the open-file
    cache's one second) to a reload that bypasses the cache."""
    log = tmp_path / 'access.log'
    srv = serve(MarkerApp(), static={'/static': str(site)},
                access_log=str(log))
    url = 'http://127.0.0.1:%d/static/index.html' % srv.address[1]
    _load(browser, url)
    js = browser.execute_script

    def color():
        return js('return getComputedStyle(document.getElementById("box"))'
                  '.color')
    assert color() == 'rgb(1, 2, 3)'

    def lines():
        return log.read_text().splitlines() if log.exists() else []
    browser.refresh()
    _load(browser, url)
    assert color() == 'rgb(1, 2, 3)'
    assert wait_for(lambda: any('GET /static/index.html HTTP/1.1" 304 ' in l
                                for l in lines()), 3), lines()

    tmp = site.parent / 'site.css.new'
    tmp.write_bytes(b'#box { color: rgb(200, 100, 50); }\n')
    tmp.replace(site / 'css' / 'site.css')
    time.sleep(1.1)
    browser.execute_cdp_cmd('Network.enable', {})
    browser.execute_cdp_cmd('Network.setCacheDisabled', {'cacheDisabled': True})
    browser.refresh()
    _load(browser, url)
    assert color() == 'rgb(200, 100, 50)'
