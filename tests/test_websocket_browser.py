"""The chat example (examples/chat) in a real browser: headless Chromium,
through Selenium, loads the page from `lichen --gevent`, whose JavaScript
opens a websocket to the Flask view at /ws. What one page types shows up in
the others; a page that closes is dropped by the server (its presence count
goes down on the other pages) and the others go on chatting.

Skipped only when selenium, chromium or chromedriver is missing."""
import time

import pytest

from helpers_cli import request
from browser_support import chromium, require_browser
from support import wait_for
from ws_helpers import REFERENCE, gevent_server

pytestmark = pytest.mark.timeout(60)

require_browser()

WAIT = 10.0


@pytest.fixture
def browser():
    with chromium() as drv:
        yield drv


@pytest.fixture
def chat():
    """The chat served by lichen --gevent, as its README says; after the
    test, it must stop cleanly and have logged no error."""
    proc = gevent_server('examples.chat.app:app')
    try:
        yield proc
        assert proc.stop() == 0, proc.stderr
        assert 'Traceback' not in proc.stderr, proc.stderr
        assert '[ERROR]' not in proc.stderr, proc.stderr
    finally:
        proc.kill()


class Page:
    """One window of the browser showing the chat."""

    def __init__(self, browser, url, new_window=True):
        self.browser = browser
        if new_window:
            browser.switch_to.new_window('window')
        self.handle = browser.current_window_handle
        browser.get(url)
        assert wait_for(lambda: self._js(
            'return document.getElementById("status").textContent')
            == 'open', WAIT), ('websocket did not open',
                               browser.page_source[:2000])

    def _js(self, script):
        self.browser.switch_to.window(self.handle)
        return self.browser.execute_script(script)

    def online(self):
        return self._js('return document.getElementById("online")'
                        '.textContent')

    def status(self):
        return self._js('return document.getElementById("status")'
                        '.textContent')

    def messages(self):
        return self._js('return Array.from(document.querySelectorAll('
                        '"#messages li"), function (li) '
                        '{ return li.textContent; })')

    def say(self, text):
        from selenium.webdriver.common.by import By
        self.browser.switch_to.window(self.handle)
        box = self.browser.find_element(By.ID, 'text')
        box.clear()
        box.send_keys(text)
        self.browser.find_element(By.ID, 'send').click()
        # the page empties the input once the message went out
        assert wait_for(lambda: box.get_attribute('value') == '', WAIT), \
            'the page did not send %r' % text

    def close(self):
        self.browser.switch_to.window(self.handle)
        self.browser.close()


def _wait_equal(get, expected, what):
    assert wait_for(lambda: get() == expected, WAIT), (what, get(), expected)


def test_a_message_typed_in_one_page_shows_in_the_other(chat, browser):
    url = chat.urls[0] + '/'
    a = Page(browser, url, new_window=False)
    b = Page(browser, url)
    _wait_equal(a.online, '2', 'page A sees both pages online')
    _wait_equal(b.online, '2', 'page B sees both pages online')
    assert browser.title == 'lichen chat'
    # Chromium offers permessage-deflate; lichen accepts it (gevent-websocket
    # does not compress)
    extensions = a._js('return window.chatSocket.extensions')
    assert REFERENCE or extensions.startswith('permessage-deflate'), \
        extensions

    a.say('hello from A')
    _wait_equal(b.messages, ['hello from A'], "B got A's message")
    _wait_equal(a.messages, ['hello from A'], 'A got its own message back')

    text = 'réponse de B: ✓ 🌿 ' + 'x' * 300
    b.say(text)
    _wait_equal(a.messages, ['hello from A', text], "A got B's message")
    _wait_equal(b.messages, ['hello from A', text], 'B has both, in order')

    for i in range(5):
        (a if i % 2 else b).say('burst %d' % i)
    burst = ['burst %d' % i for i in range(5)]
    _wait_equal(lambda: a.messages()[2:], burst, 'A got the burst in order')
    _wait_equal(lambda: b.messages()[2:], burst, 'B got the burst in order')
    assert a.status() == b.status() == 'open'


def test_a_closed_page_is_dropped_and_the_others_go_on(chat, browser):
    url = chat.urls[0] + '/'
    a = Page(browser, url, new_window=False)
    b = Page(browser, url)
    c = Page(browser, url)
    for page in (a, b, c):
        _wait_equal(page.online, '3', 'three pages online')
    assert request(chat.urls[0], path='/online').body == b'{"online":3}\n'

    b.say('B was here')
    for page in (a, c):
        _wait_equal(page.messages, ['B was here'], "B's message")

    b.close()  # the window goes: Chromium closes its websocket
    _wait_equal(a.online, '2', 'A saw B leave')
    _wait_equal(c.online, '2', 'C saw B leave')
    assert wait_for(lambda: request(chat.urls[0], path='/online').body ==
                    b'{"online":2}\n', WAIT)

    a.say('after B left')
    _wait_equal(c.messages, ['B was here', 'after B left'], 'C still hears A')
    c.say('C answers')
    _wait_equal(a.messages, ['B was here', 'after B left', 'C answers'],
                'A still hears C')

    # a page that reloads leaves and comes back: one websocket again
    browser.switch_to.window(c.handle)
    browser.refresh()
    c = Page(browser, url, new_window=False)
    _wait_equal(c.messages, [], 'a reloaded page starts empty')
    _wait_equal(a.online, '2', 'A: the reload left and joined again')
    _wait_equal(c.online, '2', 'C counts itself and A')
    c.say('C is back')
    _wait_equal(lambda: a.messages()[-1], 'C is back', 'A hears C again')
    assert a.status() == c.status() == 'open'

    # the server stops (SIGTERM): the open pages see their websocket close
    # at once, and lichen exits without waiting for them
    started = time.monotonic()
    assert chat.stop() == 0, chat.stderr
    assert time.monotonic() - started < 5, chat.stderr
    _wait_equal(a.status, 'closed', 'A saw the server go')
    _wait_equal(c.status, 'closed', 'C saw the server go')
