"""Which tests of gevent's test__pywsgi run against lichen, and what is
expected of them. Pure data: imported by the runner (under gevent) and by
tests/test_gevent_suite.py (without gevent).

Every test the module holds is in exactly one of CHOSEN and EXCLUDED; a
gevent release that adds or renames tests makes test_gevent_suite.py fail
until this file is brought up to date. Ids are ``Class.method``.
"""

# The gevent release whose tests these lists describe (pinned in the test
# extras of pyproject.toml).
GEVENT_VERSION = '26.9.0'

# HTTP and WSGI behaviour: each runs against lichen and must pass, unless it
# is in EXPECTED_DIFFERENCES.
CHOSEN = [
    'BadRequestTests.test_bad_request_line_with_percent',
    'BadRequestTests.test_illegal_content_length',
    'BadRequestTests.test_negative_content_length',
    'ChunkedInputTests.test_chunked_readline',
    'ChunkedInputTests.test_close_before_finished',
    'ChunkedInputTests.test_dirt',
    'ChunkedInputTests.test_short_read',
    'ChunkedInputTests.test_short_read_with_content_length',
    'ChunkedInputTests.test_short_read_with_zero_content_length',
    'Expect100ContinueTests.test_continue',
    'MultipleCookieHeadersTest.test',
    'Test414.test',
    'TestBigChunks.test_chunked_response',
    'TestBigChunks.test_no_chunked_http_1_0',
    'TestBytearray.test_basic',
    'TestBytearray.test_connection_close',
    'TestBytearray.test_pipeline',
    'TestChunkedApp.test_chunked_response',
    'TestChunkedApp.test_no_chunked_http_1_0',
    'TestChunkedPost.test_014_chunked_post',
    'TestChunkedPost.test_229_correct_chunk_quoted_ext',
    'TestChunkedPost.test_229_correct_chunk_token_ext',
    'TestChunkedPost.test_229_incorrect_chunk_no_newline',
    'TestChunkedPost.test_229_incorrect_chunk_non_hex',
    'TestChunkedPost.test_229_incorrect_chunk_token_ext_too_long',
    'TestChunkedPost.test_trailers_close_ignored',
    'TestChunkedPost.test_trailers_keepalive_ignored',
    'TestChunkedPost.test_trailers_request_smuggling_header_first',
    'TestChunkedPost.test_trailers_request_smuggling_missing_last_chunk_keep_alive',
    'TestChunkedPost.test_trailers_request_smuggling_request_terminates_then_header',
    'TestChunkedPost.test_trailers_too_long',
    'TestCloseIter.test_close_is_called',
    'TestConnectionUpgrades.test_basic',
    'TestConnectionUpgrades.test_connection_close',
    'TestConnectionUpgrades.test_connection_upgrade',
    'TestConnectionUpgrades.test_dne',
    'TestConnectionUpgrades.test_pipeline',
    'TestConnectionUpgrades.test_upgrade_websocket',
    'TestContentLength304.test_err',
    'TestEmptyWrite.test_err',
    'TestEmptyYield.test_err',
    'TestEmptyYield304.test_err',
    'TestErrorAfterChunk.test',
    'TestErrorInApplication.test',
    'TestError_after_start_response.test',
    'TestExplicitContentLength.test_basic',
    'TestExplicitContentLength.test_connection_close',
    'TestExplicitContentLength.test_dne',
    'TestExplicitContentLength.test_pipeline',
    'TestFirstEmptyYield.test_err',
    'TestGetArg.test_007_get_arg',
    'TestHTTPResponseSplitting.test_newline_in_header_name',
    'TestHTTPResponseSplitting.test_newline_in_header_value',
    'TestHTTPResponseSplitting.test_newline_in_status',
    'TestInputIter.test',
    'TestInputN.test',
    'TestInputReadline.test',
    'TestInputReadlines.test',
    'TestInternational.test',
    'TestInvalidEnviron.test',
    'TestInvalidHeadersDropped.test',
    'TestLeakInput.test_connection_close_leak_frame',
    'TestLeakInput.test_connection_close_leak_simple',
    'TestMultiLineHeader.test_multiline_116',
    'TestNegativeRead.test_negative_chunked_read',
    'TestNegativeRead.test_negative_nonchunked_read',
    'TestNegativeReadline.test_negative_chunked_readline',
    'TestNegativeReadline.test_negative_nonchunked_readline',
    'TestNoChunks.test_basic',
    'TestNoChunks.test_connection_close',
    'TestNoChunks.test_dne',
    'TestNoChunks.test_pipeline',
    'TestNoChunks10.test_basic',
    'TestNoChunks10.test_connection_close',
    'TestNoChunks10.test_dne',
    'TestNoChunks10.test_pipeline',
    'TestNoChunks10KeepAlive.test_basic',
    'TestNoChunks10KeepAlive.test_connection_close',
    'TestNoChunks10KeepAlive.test_dne',
    'TestNoChunks10KeepAlive.test_pipeline',
    'TestNonLatin1HeaderFromApplication.test',
    'TestNonLatin1UnicodeHeaderFromApplication.test',
    'TestUseWrite.test_explicit_content_length',
    'TestUseWrite.test_no_content_length',
    'TestUseWrite.test_no_content_length_twice',
    'TestYield.test_basic',
    'TestYield.test_connection_close',
    'TestYield.test_pipeline',
]

# Not run: gevent internals, or skipped by gevent itself. Keyed by class
# (every test of it) or by test id.
EXCLUDED = {
    'TestInputRaw': 'unit tests of the gevent.pywsgi.Input class over a '
                    'BytesIO; no server is involved',
    'TestLogging': "pywsgi's logger adapter (server.log) and its access-log "
                   'line format',
    'TestEnviron': "pywsgi's SecureEnviron class and the server's "
                   'environ_class attribute',
    'TestHandlerSubclass': "a custom pywsgi.WSGIHandler (handler_class) that "
                           'overrides read_requestline',
    'TestBody304': "passes only when pywsgi's AssertionError in the server "
                   "greenlet is thrown into the test's greenlet by gevent's "
                   'hub (error_fatal)',
    'TestWrite304': "passes only when pywsgi's AssertionError in the server "
                    "greenlet is thrown into the test's greenlet by gevent's "
                    'hub (error_fatal)',
}
for _cls in ('TestBytearray', 'TestConnectionUpgrades',
             'TestExplicitContentLength', 'TestNoChunks', 'TestNoChunks10',
             'TestNoChunks10KeepAlive', 'TestYield'):
    EXCLUDED[_cls + '.test_006_reject_long_urls'] = (
        'skipped by gevent itself (@unittest.skip("Not sure")); long '
        'request lines are covered by Test414')
del _cls

# Chosen tests that fail against lichen because lichen, deliberately,
# behaves differently: id -> (reason, text the failure report must contain,
# so that a failure for another reason is not excused).
_NO_HOST = ('HTTP/1.1 request without Host: lichen answers 400 (RFC 9112 '
            "section 3.2), pywsgi serves it", 'Unexpected code: 400')
_CL_AND_TE = ('Content-Length together with Transfer-Encoding: lichen '
              'answers 400 (RFC 9112 section 6.1, smuggling), pywsgi '
              'prefers chunked', 'Unexpected code: 400')
_UPGRADE = ('Upgrade request: lichen sets wsgi.input_terminated True (input '
            'ends at the request body), pywsgi leaves the raw connection '
            'unterminated for the upgraded protocol',
            "assertFalse(self.last_environ['wsgi.input_terminated'])")
_EMPTY_BODY = ('body made of empty strings only: lichen holds the head until '
               'the body is known empty and sends Content-Length: 0, pywsgi '
               'sends an empty chunked body', 'AssertionError: ([], False)')
_SPLIT_MESSAGE = ('same ValueError from start_response, different message '
                  "text (pywsgi's wording is its own)",
                  "!= 'carriage return or newline in")

EXPECTED_DIFFERENCES = {
    'MultipleCookieHeadersTest.test': (
        'repeated Cookie fields are joined with "; " by both, but the '
        'obsolete Cookie2 field (RFC 2965, retired by RFC 6265) is joined '
        'with "," by lichen like any other field, with "; " by pywsgi',
        'nameA="valueA",nameB="valueB"'),
    'ChunkedInputTests.test_chunked_readline': _CL_AND_TE,
    'ChunkedInputTests.test_short_read_with_content_length': _CL_AND_TE,
    'ChunkedInputTests.test_short_read_with_zero_content_length': _CL_AND_TE,
    'ChunkedInputTests.test_short_read': _NO_HOST,
    'ChunkedInputTests.test_dirt': (
        'HTTP/1.1 request without Host, and a NUL in a chunk extension: '
        'lichen answers 400 (RFC 9112 sections 3.2, 7.1.1)',
        'Unexpected code: 400'),
    'ChunkedInputTests.test_close_before_finished': (
        'client gone mid-body: lichen raises ClientDisconnected (an OSError) '
        'in the application but does not log it as an application error; '
        'pywsgi reports its IOError to the hub',
        'Error must not be none'),
    'Expect100ContinueTests.test_continue': (
        'Expect: 100-continue with the body already received: lichen omits '
        'the 100 (RFC 9110 section 10.1.1 allows it), pywsgi sends it',
        'Unexpected code: 200 (expected 100)'),
    'TestConnectionUpgrades.test_connection_upgrade': _UPGRADE,
    'TestConnectionUpgrades.test_upgrade_websocket': _UPGRADE,
    'TestContentLength304.test_err': (
        'Content-Length on a 304: lichen lets it through (RFC 9110 section '
        '8.6 allows it), pywsgi start_response rejects a non-zero one',
        'start_response did not fail but it should'),
    'TestEmptyWrite.test_err': _EMPTY_BODY,
    'TestEmptyYield.test_err': _EMPTY_BODY,
    'TestHTTPResponseSplitting.test_newline_in_header_name': _SPLIT_MESSAGE,
    'TestHTTPResponseSplitting.test_newline_in_header_value': _SPLIT_MESSAGE,
    'TestHTTPResponseSplitting.test_newline_in_status': _SPLIT_MESSAGE,
    'TestMultiLineHeader.test_multiline_116': (
        'obs-fold (a header continued on the next line): lichen answers 400 '
        '(RFC 9112 section 5.2), pywsgi unfolds it', 'Unexpected code: 400'),
    'TestNonLatin1HeaderFromApplication.test': _NO_HOST,
    'TestNonLatin1UnicodeHeaderFromApplication.test': _NO_HOST,
}


def excluded_reason(test_id):
    """The exclusion reason of a test id, or None when it is not excluded."""
    if test_id in EXCLUDED:
        return EXCLUDED[test_id]
    return EXCLUDED.get(test_id.split('.', 1)[0])
