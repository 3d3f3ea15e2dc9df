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

# HTTP and WSGI behaviour, and the server's interface (log, environ_class):
# each runs against lichen.pywsgi and must pass, unless it is in
# EXPECTED_DIFFERENCES.
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
    'TestBody304.test_err',
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
    ('TestChunkedPost.test_trailers_request_smuggling_missing_last_chunk_'
     'keep_alive'),
    ('TestChunkedPost.test_trailers_request_smuggling_request_terminates_'
     'then_header'),
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
    'TestEnviron.test_copy_still_secure',
    'TestEnviron.test_default_secure_repr',
    'TestEnviron.test_environ_is_secure_by_default',
    'TestEnviron.test_override_class_defaults',
    'TestEnviron.test_pickle_copy_returns_dict',
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
    'TestLogging.test_proxy_methods_on_log',
    'TestLogging.test_set_attributes',
    'TestLogging.test_status_log',
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
    'TestWrite304.test_err',
    'TestYield.test_basic',
    'TestYield.test_connection_close',
    'TestYield.test_pipeline',
]

# Not run, keyed by class (every test of it) or by test id.
EXCLUDED = {
    'TestInputRaw': 'unit tests of the gevent.pywsgi.Input class over a '
                    'BytesIO; no server is involved',
    'TestHandlerSubclass': (
        'a pywsgi.WSGIHandler subclass whose read_requestline answers a '
        'non-HTTP line (a Flash policy-file request) itself: lichen.pywsgi '
        "does not call a handler subclass's methods (start() warns, naming "
        'them), and the line, which never ends in CRLF, waits for the rest '
        'of a request head until the test times out'),
}
for _cls in ('TestBytearray', 'TestConnectionUpgrades',
             'TestExplicitContentLength', 'TestNoChunks', 'TestNoChunks10',
             'TestNoChunks10KeepAlive', 'TestYield'):
    EXCLUDED[_cls + '.test_006_reject_long_urls'] = (
        'skipped by gevent itself (@unittest.skip("Not sure")); long '
        'request lines are covered by Test414')
del _cls

# Chosen tests that fail against lichen because lichen, deliberately,
# behaves differently: id -> (reason, with the RFC sentence that allows or
# requires lichen's behaviour; text the failure report must contain, so
# that a failure for another reason is not excused).
_RFC9112_3_2 = (
    'RFC 9112 section 3.2: "A server MUST respond with a 400 (Bad Request) '
    'status code to any HTTP/1.1 request message that lacks a Host header '
    'field"')
_NO_HOST = (
    'HTTP/1.1 request without Host: lichen answers 400 (%s); pywsgi serves '
    'it' % _RFC9112_3_2, 'Unexpected code: 400')
_CL_AND_TE = (
    'HTTP/1.1 request without Host (%s), and with both Content-Length and '
    'Transfer-Encoding (RFC 9112 section 6.1: "A server MAY reject a '
    'request that contains both Content-Length and Transfer-Encoding"): '
    'lichen answers 400, for either; pywsgi serves it by the chunked '
    'coding' % _RFC9112_3_2, 'Unexpected code: 400')
_UPGRADE = (
    'request asking for an upgrade (Connection: upgrade, Upgrade: '
    'websocket): lichen stays with HTTP/1.1 (RFC 9110 section 7.8: "A '
    'server MAY ignore a received Upgrade header field if it wishes to '
    'continue using the current protocol on that connection"), so '
    'wsgi.input ends with the request body and wsgi.input_terminated is '
    'True; pywsgi hands the application the connection, unterminated',
    "assertFalse(self.last_environ['wsgi.input_terminated'])")
_EMPTY_BODY = (
    'body made only of empty strings: lichen holds the head until the body '
    'is known to be empty and sends Content-Length: 0 (RFC 9110 section '
    '8.6: "In the absence of Transfer-Encoding, an origin server SHOULD '
    'send a Content-Length header field when the content size is known '
    'prior to sending the complete header section"); pywsgi sends an empty '
    'chunked body', 'AssertionError: ([], False)')
_SPLIT = (
    'CR or LF in the status or a header: start_response raises ValueError '
    'in both (RFC 9110 section 5.5: "Field values containing CR, LF, or '
    'NUL characters are invalid and dangerous"), lichen with its own '
    'wording and for any control character; the application catches it '
    'and returns without a response, which lichen answers with a 500 (RFC '
    '9110 section 15.6.1: "the server encountered an unexpected condition '
    'that prevented it from fulfilling the request") and reports to the '
    "hub as an application error, raised in the test by gevent's "
    'error_fatal; pywsgi closes the connection without a response',
    'RuntimeError: the application did not call start_response')
_RFC9110_15_4_5 = (
    'RFC 9110 section 15.4.5: "A 304 response is terminated by the end of '
    'the header section; it cannot contain content or trailers"')

EXPECTED_DIFFERENCES = {
    'MultipleCookieHeadersTest.test': (
        'repeated Cookie fields are joined with "; " by both; repeated '
        'Cookie2 fields (obsolete: RFC 2965, retired by RFC 6265) are '
        'joined with "," by lichen, as any repeated field (RFC 9110 section '
        '5.3: "A recipient MAY combine multiple field lines within a field '
        'section that have the same field name into one field line ... by '
        'appending each subsequent field line value to the combined field '
        'line value in order, separated by a comma"), with "; " by pywsgi',
        'nameA="valueA",nameB="valueB"'),
    'ChunkedInputTests.test_chunked_readline': _CL_AND_TE,
    'ChunkedInputTests.test_short_read_with_content_length': _CL_AND_TE,
    'ChunkedInputTests.test_short_read_with_zero_content_length': _CL_AND_TE,
    'ChunkedInputTests.test_short_read': _NO_HOST,
    'ChunkedInputTests.test_dirt': (
        'HTTP/1.1 request without Host (%s), and a chunk extension outside '
        'the grammar ("; here is dirt\\0bla": RFC 9112 section 7.1.1, a '
        'chunk-ext-name is a token, with no space or NUL; RFC 9112 section '
        '2.2: a server receiving "a sequence of octets that does not match '
        'the HTTP-message grammar ... SHOULD respond with a 400 (Bad '
        'Request) response and close the connection"): lichen answers 400, '
        'for either; pywsgi ignores the extension' % _RFC9112_3_2,
        'Unexpected code: 400'),
    'ChunkedInputTests.test_close_before_finished': (
        'client gone in the middle of a chunked body, an incomplete request '
        '(RFC 9112 section 8: "A server that receives an incomplete request '
        'message, usually due to a canceled request or a triggered timeout '
        'exception, MAY send an error response prior to closing the '
        'connection"): lichen raises ClientDisconnected (an OSError) in the '
        'application and, the client being gone, closes without reporting '
        'an application error to the hub; pywsgi reports its IOError there',
        'Error must not be none'),
    'Expect100ContinueTests.test_continue': (
        'Expect: 100-continue with the body already received: lichen omits '
        'the 100 (RFC 9110 section 10.1.1: "A server MAY omit sending a 100 '
        '(Continue) response if it has already received some or all of the '
        'content for the corresponding request"); pywsgi sends it',
        'Unexpected code: 200 (expected 100)'),
    'TestBody304.test_err': (
        'a body from the application on a 304: lichen sends the 304 without '
        'it (%s); pywsgi raises AssertionError("The 304 response must have '
        'no body") in the server, which error_fatal raises in the test'
        % _RFC9110_15_4_5, 'Unexpected code: 304 (expected 200)'),
    'TestWrite304.test_err': (
        "write('body'), a str, on a 304: lichen's write() takes bytes only "
        '(PEP 3333: the body is made of bytestrings) and raises TypeError, '
        'which the application does not catch (with bytes, lichen would '
        'send the 304 without them: %s); pywsgi raises AssertionError for '
        'the 304 first' % _RFC9110_15_4_5,
        "TypeError: a bytes-like object is required, not 'str'"),
    'TestConnectionUpgrades.test_connection_upgrade': _UPGRADE,
    'TestConnectionUpgrades.test_upgrade_websocket': _UPGRADE,
    'TestContentLength304.test_err': (
        'Content-Length: 100 on a 304: lichen sends it (RFC 9110 section '
        '8.6: "A server MAY send a Content-Length header field in a 304 '
        '(Not Modified) response to a conditional GET request"); pywsgi '
        'start_response rejects a non-zero one',
        'start_response did not fail but it should'),
    'TestEmptyWrite.test_err': _EMPTY_BODY,
    'TestEmptyYield.test_err': _EMPTY_BODY,
    'TestHTTPResponseSplitting.test_newline_in_header_name': _SPLIT,
    'TestHTTPResponseSplitting.test_newline_in_header_value': _SPLIT,
    'TestHTTPResponseSplitting.test_newline_in_status': _SPLIT,
    'TestMultiLineHeader.test_multiline_116': (
        'obs-fold (a field line continued on the next line): lichen answers '
        '400 (RFC 9112 section 5.2: "A server that receives an obs-fold in a '
        'request message that is not within a message/http container MUST '
        'either reject the message by sending a 400 (Bad Request) ... or '
        'replace each received obs-fold with one or more SP octets"); '
        'pywsgi unfolds it', 'Unexpected code: 400'),
    'TestNonLatin1HeaderFromApplication.test': _NO_HOST,
    'TestNonLatin1UnicodeHeaderFromApplication.test': _NO_HOST,
}


def excluded_reason(test_id):
    """The exclusion reason of a test id, or None when it is not excluded."""
    if test_id in EXCLUDED:
        return EXCLUDED[test_id]
    return EXCLUDED.get(test_id.split('.', 1)[0])
