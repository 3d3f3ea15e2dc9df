"""The Autobahn|Testsuite fuzzing client's cases, against lichen's websockets.

Each test is named after its Autobahn case (section 1 framing, 2 pings and
pongs, 3 reserved bits, 4 opcodes, 5 fragmentation, 6 UTF-8, 7 close, 9 sizes
(bounded), 10 auto-fragmentation, 12/13 permessage-deflate). The server app is
an echo; the client is the raw one of ws_support.py, which sends whatever a
case needs (bad frames, octet-wise chops, reserved bits) and checks every
byte the server sends back.

Autobahn's verdicts: "clean close with normal code" is the close
handshake with 1000 both ways, then the server closes TCP; "failed" is a
close frame with the expected code (1002, 1007...), nothing after it, then
the TCP close. Where Autobahn allows two outcomes (OK and NON-STRICT, e.g.
an echo that may or may not come out before a later protocol error in the
same segment) so do these tests; the docstrings say which.

LICHEN_WS_REFERENCE=1 runs the file against the websockets library's server
instead (a check of the client and of the expectations, not of lichen).
"""
import json
import os
import random
import struct
import time

import pytest

import support
from ws_support import (
    OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RSV1, TAIL, Close, Pong, ReferenceServer,
    WSClient, binary, build_frame, close_payload, echo_app, parse_extensions, text,
)

REFERENCE = bool(os.environ.get('LICHEN_WS_REFERENCE'))


@pytest.fixture
def ws_server(serve):
    """addr = ws_server(**lichen options): an echo websocket server."""
    refs = []

    def start(**options):
        if REFERENCE:
            ref = ReferenceServer(max_size=options.get('ws_max_message'),
                                  compression=None if options.get('ws_compression') is False else 'deflate')
            refs.append(ref)
            return ref.address
        return serve(echo_app, **options).address

    yield start
    support.close_all()
    for ref in refs:
        ref.stop()


@pytest.fixture
def addr(ws_server):
    return ws_server()


def echo_roundtrip(addr, payload, opcode, chop=None, fragment=None):
    ws = WSClient(addr)
    ws.send_message(payload, opcode=opcode, chop=chop, fragment=fragment)
    got = ws.recv_message(timeout=20)
    assert got.opcode == opcode and got.data == payload, got
    ws.close_cleanly()


def failed(ws, code=1002, allowed=([],)):
    """The server fails the connection with `code` (close frame, then the TCP
    close); the events before its close frame are one of `allowed`."""
    close, events = ws.expect_close(code)
    assert events in [list(a) for a in allowed], 'events before the close: %r' % events
    return events


# -- 1: framing ---------------------------------------------------------------

SIZES_1 = [('1', 0), ('2', 125), ('3', 126), ('4', 127), ('5', 128), ('6', 65535), ('7', 65536)]


@pytest.mark.parametrize('case,n', SIZES_1, ids=['1_1_%s_len%d' % c for c in SIZES_1])
def test_1_1_text(addr, case, n):
    """1.1.1-1.1.7: a text message of 0, 125, 126, 127, 128, 65535, 65536 bytes is echoed."""
    echo_roundtrip(addr, b'*' * n, OP_TEXT)


def test_1_1_8_text_65536_chops_997(addr):
    echo_roundtrip(addr, b'*' * 65536, OP_TEXT, chop=997)


@pytest.mark.parametrize('case,n', SIZES_1, ids=['1_2_%s_len%d' % c for c in SIZES_1])
def test_1_2_binary(addr, case, n):
    """1.2.1-1.2.7: binary messages of the same lengths."""
    echo_roundtrip(addr, b'\xfe' * n, OP_BINARY)


def test_1_2_8_binary_65536_chops_997(addr):
    echo_roundtrip(addr, b'\xfe' * 65536, OP_BINARY, chop=997)


def test_1_x_non_minimal_lengths_accepted(addr):
    """Not an Autobahn case: RFC 6455 asks for the minimal length encoding
    but lichen accepts a longer one (16- and 64-bit forms of short lengths)...
    or fails it with 1002; either way, nothing else."""
    ws = WSClient(addr)
    ws.send_raw(build_frame(OP_TEXT, b'abc', length_form='16'))
    ev = ws.recv()
    if isinstance(ev, Close):
        assert ev.code == 1002, ev
        return
    assert ev == text('abc'), ev
    ws.send_raw(build_frame(OP_BINARY, b'xyz', length_form='64'))
    assert ws.recv_message() == binary(b'xyz')
    ws.close_cleanly()


def test_1_x_64bit_length_with_top_bit_fails(addr):
    """RFC 6455 5.2: the most significant bit of a 64-bit length must be 0."""
    ws = WSClient(addr)
    head = struct.pack('!BBQ', 0x82, 0x80 | 127, 1 << 63) + b'\x00\x00\x00\x00'
    ws.send_raw(head + b'x' * 16)
    ws.expect_close((1002, 1009))


# -- 2: pings and pongs -------------------------------------------------------

def _pong_echoes(addr, payload):
    """A ping gets a pong with its payload, and the websocket goes on."""
    ws = WSClient(addr)
    ws.send_ping(payload)
    assert ws.recv() == Pong(payload)
    ws.close_cleanly()


def test_2_1_ping_empty(addr):
    _pong_echoes(addr, b'')


def test_2_2_ping_text_payload(addr):
    _pong_echoes(addr, b'Hello, world!')


def test_2_3_ping_binary_payload(addr):
    _pong_echoes(addr, b'\x00\xff\xfe\xfd\xfc\xfb\x00\xff')


def test_2_4_ping_125(addr):
    _pong_echoes(addr, b'\xfe' * 125)


def test_2_5_ping_126_fails(addr):
    """A control frame of 126 bytes: failed with 1002, no pong."""
    ws = WSClient(addr)
    ws.try_send_raw(build_frame(OP_PING, b'\xfe' * 126))
    failed(ws, 1002)


def test_2_6_ping_125_octetwise(addr):
    ws = WSClient(addr)
    ws.send_raw(build_frame(OP_PING, b'\xfe' * 125), chop=1)
    assert ws.recv() == Pong(b'\xfe' * 125)
    ws.close_cleanly()


def test_2_7_unsolicited_pong_empty(addr):
    ws = WSClient(addr)
    ws.send_frame(OP_PONG, b'')
    assert ws.nothing_within(0.2)
    ws.close_cleanly()


def test_2_8_unsolicited_pong_payload(addr):
    ws = WSClient(addr)
    ws.send_frame(OP_PONG, b'unsolicited pong payload')
    assert ws.nothing_within(0.2)
    ws.close_cleanly()


def test_2_9_pong_then_ping(addr):
    """Nothing for our pong, the pong for our ping."""
    ws = WSClient(addr)
    ws.send_frame(OP_PONG, b'unsolicited pong payload')
    ws.send_ping(b'ping payload')
    assert ws.recv() == Pong(b'ping payload')
    assert ws.nothing_within(0.1)
    ws.close_cleanly()


@pytest.mark.parametrize('chop', [None, 1], ids=['2_10_ten_pings', '2_11_ten_pings_octetwise'])
def test_2_10_11_ten_pings(addr, chop):
    ws = WSClient(addr)
    payloads = [b'payload-%d' % i for i in range(10)]
    ws.send_raw(b''.join(build_frame(OP_PING, p) for p in payloads), chop=chop)
    assert [ws.recv() for _ in payloads] == [Pong(p) for p in payloads]
    ws.close_cleanly()


# -- 3: reserved bits -----------------------------------------------------------

def test_3_1_text_rsv1_fails(addr):
    ws = WSClient(addr)
    ws.try_send_raw(build_frame(OP_TEXT, b'Hello, world!', rsv=1))
    failed(ws, 1002)


def _rsv_after_echo(addr, rsv, chop, bad_opcode=OP_TEXT):
    """Autobahn 3.2-3.4: a good message, then one with reserved bits, then a
    ping. The echo of the first may or may not get out before the failure
    when it all comes in one segment (OK / NON-STRICT); no pong either way.
    In chops, the echo is awaited first (so it must be there)."""
    ws = WSClient(addr)
    good = build_frame(OP_TEXT, b'Hello, world!')
    rest = build_frame(bad_opcode, b'Hello, world!', rsv=rsv) + build_frame(OP_PING, b'')
    if chop:
        ws.send_raw(good, chop=chop)
        assert ws.recv() == text('Hello, world!')
        ws.try_send_raw(rest, chop=chop)
        failed(ws, 1002)
    else:
        ws.try_send_raw(good + rest)
        failed(ws, 1002, allowed=([], [text('Hello, world!')]))


def test_3_2_text_rsv2_after_echo(addr):
    _rsv_after_echo(addr, 2, None)


def test_3_3_text_rsv3_framewise(addr):
    _rsv_after_echo(addr, 3, 2 + 4 + 13)  # a frame per chop


def test_3_4_text_rsv4_octetwise(addr):
    _rsv_after_echo(addr, 4, 1)


def test_3_5_binary_rsv5_fails(addr):
    ws = WSClient(addr)
    ws.try_send_raw(build_frame(OP_BINARY, bytes(range(256)) * 4, rsv=5))
    failed(ws, 1002)


def test_3_6_ping_rsv6_fails(addr):
    ws = WSClient(addr)
    ws.try_send_raw(build_frame(OP_PING, b'Hello, world!', rsv=6))
    failed(ws, 1002)


def test_3_7_close_rsv7_fails(addr):
    ws = WSClient(addr)
    ws.try_send_raw(build_frame(OP_CLOSE, close_payload(1000), rsv=7))
    failed(ws, 1002)


# -- 4: opcodes -------------------------------------------------------------------

@pytest.mark.parametrize('case,opcode,payload', [
    ('4_1_1', 3, b''), ('4_1_2', 4, b'reserved opcode payload'),
    ('4_2_1', 11, b''), ('4_2_2', 12, b'reserved opcode payload'),
], ids=lambda v: v if isinstance(v, str) else None)
def test_4_reserved_opcode_fails(addr, case, opcode, payload):
    ws = WSClient(addr)
    ws.try_send_raw(build_frame(opcode, payload))
    failed(ws, 1002)


@pytest.mark.parametrize('case,opcode,payload', [
    ('4_1_3', 5, b''), ('4_1_4', 6, b'reserved opcode payload'), ('4_1_5', 7, b'reserved opcode payload'),
    ('4_2_3', 13, b''), ('4_2_4', 14, b'reserved opcode payload'), ('4_2_5', 15, b'reserved opcode payload'),
], ids=lambda v: v if isinstance(v, str) else None)
def test_4_reserved_opcode_after_message(addr, case, opcode, payload):
    """A message (echoed, awaited), then a reserved opcode, then a ping: 1002, no pong."""
    ws = WSClient(addr)
    ws.send_message('Hello, world!')
    assert ws.recv() == text('Hello, world!')
    ws.try_send_raw(build_frame(opcode, payload) + build_frame(OP_PING, b''))
    failed(ws, 1002)


def test_4_x_reserved_opcode_after_message_same_segment(addr):
    ws = WSClient(addr)
    ws.try_send_raw(build_frame(OP_TEXT, b'Hello') + build_frame(5, b'') + build_frame(OP_PING, b''))
    failed(ws, 1002, allowed=([], [text('Hello')]))


# -- 5: fragmentation -------------------------------------------------------------

def test_5_1_ping_fragmented_fails(addr):
    ws = WSClient(addr)
    ws.try_send_raw(build_frame(OP_PING, b'fragment1', fin=False) + build_frame(OP_CONT, b'fragment2'))
    failed(ws, 1002)


def test_5_2_pong_fragmented_fails(addr):
    ws = WSClient(addr)
    ws.try_send_raw(build_frame(OP_PONG, b'fragment1', fin=False) + build_frame(OP_CONT, b'fragment2'))
    failed(ws, 1002)


TWO_FRAGMENTS = [(OP_TEXT, b'fragment1', False), (OP_CONT, b'fragment2', True)]


def _frames(spec):
    return [build_frame(op, p, fin=fin) for op, p, fin in spec]


def _send_chopped(ws, frames, chop):
    """frames in one write ('one'), a write each ('frames'), or a byte at
    a time ('octets')."""
    if chop == 'frames':
        for f in frames:
            ws.send_raw(f)
            time.sleep(0.01)
    else:
        ws.send_raw(b''.join(frames), chop=1 if chop == 'octets' else None)


@pytest.mark.parametrize('chop', ['one', 'frames', 'octets'],
                         ids=['5_3_one_chop', '5_4_framewise', '5_5_octetwise'])
def test_5_3_to_5_5_text_two_fragments(addr, chop):
    ws = WSClient(addr)
    frames = _frames(TWO_FRAGMENTS)
    _send_chopped(ws, frames, chop)
    m = ws.recv_message()
    assert m == text('fragment1fragment2'), m
    ws.close_cleanly()


@pytest.mark.parametrize('chop', ['one', 'frames', 'octets'],
                         ids=['5_6_one_chop', '5_7_framewise', '5_8_octetwise'])
def test_5_6_to_5_8_ping_between_fragments(addr, chop):
    """The pong comes first, then the message."""
    ws = WSClient(addr)
    frames = _frames([TWO_FRAGMENTS[0], (OP_PING, b'ping payload', True), TWO_FRAGMENTS[1]])
    _send_chopped(ws, frames, chop)
    assert ws.recv() == Pong(b'ping payload')
    assert ws.recv() == text('fragment1fragment2')
    ws.close_cleanly()


def _send_in(ws, frames, chop):
    if chop == 'frames':
        for f in frames:
            if not ws.try_send_raw(f):
                return
            time.sleep(0.01)
    else:
        ws.try_send_raw(b''.join(frames), chop=1 if chop == 'octets' else None)


@pytest.mark.parametrize('fin,chop', [
    (True, 'one'), (True, 'frames'), (True, 'octets'), (False, 'one'), (False, 'frames'), (False, 'octets'),
], ids=['5_9', '5_10', '5_11', '5_12', '5_13', '5_14'])
def test_5_9_to_5_14_continuation_with_nothing_to_continue(addr, fin, chop):
    ws = WSClient(addr)
    frames = _frames([(OP_CONT, b'non-continuation payload', fin), (OP_TEXT, b'Hello, world!', True)])
    _send_in(ws, frames, chop)
    failed(ws, 1002)


def test_5_15_continuation_after_complete_message(addr):
    """A whole fragmented message (its echo may or may not get out first),
    then a continuation with nothing to continue: 1002."""
    ws = WSClient(addr)
    frames = _frames(TWO_FRAGMENTS + [(OP_CONT, b'fragment3', False), (OP_TEXT, b'fragment4', True)])
    ws.try_send_raw(b''.join(frames))
    failed(ws, 1002, allowed=([], [text('fragment1fragment2')]))


@pytest.mark.parametrize('fin', [False, True], ids=['5_16_cont_fin0', '5_17_cont_fin1'])
def test_5_16_5_17_repeated_bad_continuation(addr, fin):
    ws = WSClient(addr)
    once = [(OP_CONT, b'fragment1', fin), (OP_TEXT, b'fragment2', False), (OP_CONT, b'fragment3', True)]
    ws.try_send_raw(b''.join(_frames(once * 2)))
    failed(ws, 1002)


def test_5_18_two_text_opcodes_in_one_message(addr):
    ws = WSClient(addr)
    ws.try_send_raw(b''.join(_frames([(OP_TEXT, b'fragment1', False), (OP_TEXT, b'fragment2', True)])))
    failed(ws, 1002)


@pytest.mark.parametrize('framewise', [False, True], ids=['5_19', '5_20_framewise'])
def test_5_19_5_20_pings_while_fragmented(addr, framewise):
    """The first pong comes while the message is still incomplete."""
    ws = WSClient(addr)
    frags = [b'fragment1', b'fragment2', b'fragment3', b'fragment4', b'fragment5']
    part1 = _frames([(OP_TEXT, frags[0], False), (OP_CONT, frags[1], False), (OP_PING, b'pongme 1!', True)])
    part2 = _frames([(OP_CONT, frags[2], False), (OP_CONT, frags[3], False), (OP_PING, b'pongme 2!', True),
                     (OP_CONT, frags[4], True)])
    _send_in(ws, part1, 'frames' if framewise else 'one')
    assert ws.recv(timeout=2) == Pong(b'pongme 1!')
    assert ws.nothing_within(0.3)
    _send_in(ws, part2, 'frames' if framewise else 'one')
    assert ws.recv() == Pong(b'pongme 2!')
    assert ws.recv() == text(b''.join(frags))
    ws.close_cleanly()


# -- 6: UTF-8 ---------------------------------------------------------------------

def test_6_1_1_empty_text(addr):
    echo_roundtrip(addr, b'', OP_TEXT)


def test_6_1_2_three_empty_fragments(addr):
    ws = WSClient(addr)
    ws.send_raw(b''.join(_frames([(OP_TEXT, b'', False), (OP_CONT, b'', False), (OP_CONT, b'', True)])))
    assert ws.recv() == text(b'')
    ws.close_cleanly()


def test_6_1_3_empty_middle_empty_fragments(addr):
    ws = WSClient(addr)
    ws.send_raw(b''.join(_frames([(OP_TEXT, b'', False), (OP_CONT, b'middle frame payload', False),
                                  (OP_CONT, b'', True)])))
    assert ws.recv() == text(b'middle frame payload')
    ws.close_cleanly()


HELLO_UTF8 = 'Hello-µ@ßöäüàá-UTF-8!!'.encode('utf-8')
KOSME = 'κόσμε'.encode('utf-8')


def test_6_2_1_valid_utf8_one_frame(addr):
    echo_roundtrip(addr, HELLO_UTF8, OP_TEXT)


def test_6_2_2_valid_utf8_split_on_code_point(addr):
    ws = WSClient(addr)
    a, b = 'Hello-µ@ßöä'.encode('utf-8'), 'üàá-UTF-8!!'.encode('utf-8')
    ws.send_raw(b''.join(_frames([(OP_TEXT, a, False), (OP_CONT, b, True)])))
    assert ws.recv() == text(HELLO_UTF8)
    ws.close_cleanly()


@pytest.mark.parametrize('payload', [HELLO_UTF8, KOSME], ids=['6_2_3', '6_2_4'])
def test_6_2_3_6_2_4_valid_utf8_octet_fragments(addr, payload):
    """One-octet frames: fragments end inside code points."""
    ws = WSClient(addr)
    ws.send_message(payload, opcode=OP_TEXT, fragment=1)
    assert ws.recv() == text(payload)
    ws.close_cleanly()


INVALID_6_3 = KOSME + b'\xed\xa0\x80' + b'edited'   # a UTF-16 surrogate in the middle


def test_6_3_1_invalid_utf8_one_frame(addr):
    ws = WSClient(addr)
    ws.try_send_raw(build_frame(OP_TEXT, INVALID_6_3))
    failed(ws, 1007)


def test_6_3_2_invalid_utf8_octet_fragments(addr):
    ws = WSClient(addr)
    ws.try_send_raw(b''.join(ws.message_frames(INVALID_6_3, OP_TEXT, fragment=1)))
    failed(ws, 1007)


PART1 = KOSME


@pytest.mark.parametrize('part2,part3', [
    (b'\xf4\x90\x80\x80', b'edited'),       # 6.4.1: U+110000, past the last code point
    (b'\xf4\x90', b'\x80\x80edited'),       # 6.4.2: up to the octet that makes it invalid
], ids=['6_4_1', '6_4_2'])
def test_6_4_1_6_4_2_fail_fast_across_fragments(addr, part2, part3):
    """The first fragment is valid (the connection stays open); the second
    makes the text invalid: 1007 comes at once, before the message ends
    (the third fragment is never sent)."""
    ws = WSClient(addr)
    ws.send_frame(OP_TEXT, PART1, fin=False)
    assert ws.nothing_within(0.2)
    ws.try_send_raw(build_frame(OP_CONT, part2, fin=False))
    failed(ws, 1007)


def test_6_4_x_first_fragment_invalid(addr):
    """Invalid bytes in the first fragment: 1007 before the message ends."""
    ws = WSClient(addr)
    ws.try_send_raw(build_frame(OP_TEXT, b'abc\xc0\xafdef', fin=False))
    failed(ws, 1007)


def test_6_4_x_truncated_code_point_at_message_end(addr):
    """The message ends inside a code point (each fragment could be a prefix): 1007."""
    ws = WSClient(addr)
    ws.try_send_raw(build_frame(OP_TEXT, KOSME, fin=False) + build_frame(OP_CONT, b'\xe2\x82', fin=True))
    failed(ws, 1007)


@pytest.mark.parametrize('part2,part3', [
    (b'\xf4\x90\x80\x80', b'edited'),
    (b'\xf4\x90', b'\x80\x80edited'),
], ids=['6_4_3', '6_4_4'])
def test_6_4_3_6_4_4_fail_fast_inside_one_frame(addr, part2, part3):
    """One frame sent in three chops: 1007 once the second chop is in,
    before the frame is whole (Autobahn's OK; its NON-STRICT, a close only
    at the frame's end, would also pass there, but lichen checks the text
    as it arrives, so this test asks for the strict outcome)."""
    ws = WSClient(addr)
    payload = PART1 + part2 + part3
    key = os.urandom(4)
    frame = build_frame(OP_TEXT, payload, mask_key=key)
    head = len(frame) - len(payload)
    cut1, cut2 = head + len(PART1), head + len(PART1) + len(part2)
    ws.send_raw(frame[:cut1])
    assert ws.nothing_within(0.2)
    ws.send_raw(frame[cut1:cut2])
    assert not ws.nothing_within(0.5), 'no 1007 before the end of the frame (not fail-fast)'
    failed(ws, 1007)


# 6.5-6.23: the UTF-8 decoder stress tests (Markus Kuhn's UTF-8-test.txt,
# as Autobahn groups them). (valid?, bytes); each is sent as one text frame
# and again in one-octet fragments.

def _prefixes(s):
    out = []
    for i in range(1, len(s) + 1):
        try:
            s[:i].decode('utf-8')
            out.append((True, s[:i]))
        except UnicodeDecodeError:
            out.append((False, s[:i]))
    return out


def _noncharacters():
    out = [(True, b'\xef\xbf\xbe'), (True, b'\xef\xbf\xbf')]
    for plane in range(1, 17):
        for last in (0xFFFE, 0xFFFF):
            out.append((True, chr(plane * 0x10000 + last).encode('utf-8')))
    return out


UTF8_CASES = {
    '6_5': [(True, b'hello$world'), (True, 'hello\u00a2world'.encode()), (True, 'hello\u20acworld'.encode()),
            (True, 'hello\U00024b62world'.encode()), (True, KOSME)],
    '6_6': _prefixes(KOSME),
    '6_7': [(True, b'\x00'), (True, b'\xc2\x80'), (True, b'\xe0\xa0\x80'), (True, b'\xf0\x90\x80\x80')],
    '6_8': [(False, b'\xf8\x88\x80\x80\x80'), (False, b'\xfc\x84\x80\x80\x80\x80')],
    '6_9': [(True, b'\x7f'), (True, b'\xdf\xbf'), (True, b'\xef\xbf\xbf'), (True, b'\xf4\x8f\xbf\xbf')],
    '6_10': [(False, b'\xf7\xbf\xbf\xbf'), (False, b'\xfb\xbf\xbf\xbf\xbf'), (False, b'\xfd\xbf\xbf\xbf\xbf\xbf')],
    '6_11': [(True, b'\xed\x9f\xbf'), (True, b'\xee\x80\x80'), (True, b'\xef\xbf\xbd'), (True, b'\xf4\x8f\xbf\xbf'),
             (False, b'\xf4\x90\x80\x80')],
    '6_12': [(False, bytes(range(0x80, 0x80 + n))) for n in range(1, 7)] + [(False, b'\xbf'),
                                                                          (False, bytes(range(0x80, 0xc0)))],
    '6_13': [(False, b''.join(bytes([c]) + b' ' for c in range(lo, hi)))
             for lo, hi in [(0xc0, 0xe0), (0xe0, 0xf0), (0xf0, 0xf8), (0xf8, 0xfc), (0xfc, 0xfe)]],
    '6_14': [(False, s) for s in [b'\xc0', b'\xe0\x80', b'\xf0\x80\x80', b'\xf8\x80\x80\x80', b'\xfc\x80\x80\x80\x80',
                                  b'\xdf', b'\xef\xbf', b'\xf7\xbf\xbf', b'\xfb\xbf\xbf\xbf', b'\xfd\xbf\xbf\xbf\xbf']],
    '6_15': [(False, b'\xc0\xe0\x80\xf0\x80\x80\xf8\x80\x80\x80\xfc\x80\x80\x80\x80'
                     b'\xdf\xef\xbf\xf7\xbf\xbf\xfb\xbf\xbf\xbf\xfd\xbf\xbf\xbf\xbf')],
    '6_16': [(False, b'\xfe'), (False, b'\xff'), (False, b'\xfe\xfe\xff\xff')],
    '6_17': [(False, s) for s in [b'\xc0\xaf', b'\xe0\x80\xaf', b'\xf0\x80\x80\xaf', b'\xf8\x80\x80\x80\xaf',
                                  b'\xfc\x80\x80\x80\x80\xaf']],
    '6_18': [(False, s) for s in [b'\xc1\xbf', b'\xe0\x9f\xbf', b'\xf0\x8f\xbf\xbf', b'\xf8\x87\xbf\xbf\xbf',
                                  b'\xfc\x83\xbf\xbf\xbf\xbf']],
    '6_19': [(False, s) for s in [b'\xc0\x80', b'\xe0\x80\x80', b'\xf0\x80\x80\x80', b'\xf8\x80\x80\x80\x80',
                                  b'\xfc\x80\x80\x80\x80\x80']],
    '6_20': [(False, b'\xed' + bytes([b2, b3])) for b2, b3 in
             [(0xa0, 0x80), (0xad, 0xbf), (0xae, 0x80), (0xaf, 0xbf), (0xb0, 0x80), (0xbe, 0x80), (0xbf, 0xbf)]],
    '6_21': [(False, b'\xed' + bytes([h, 0x80 | (hl & 0x3f)]) + b'\xed' + bytes([l, 0x80 | (ll & 0x3f)]))
             for h, hl in [(0xa0, 0x80), (0xad, 0xbf), (0xae, 0x80), (0xaf, 0xbf)]
             for l, ll in [(0xb0, 0x80), (0xbf, 0xbf)]],
    '6_22': _noncharacters(),
    '6_23': [(True, chr(c).encode('utf-8')) for c in range(0xfff9, 0x10000)],
}


@pytest.mark.parametrize('case', sorted(UTF8_CASES, key=lambda c: int(c.split('_')[1])))
def test_6_5_to_6_23_utf8_sequences(addr, case):
    """Valid sequences are echoed; invalid ones fail with 1007 (whole and
    in one-octet fragments). The expectations are checked against Python's
    own decoder first."""
    results = []
    for valid, payload in UTF8_CASES[case]:
        try:
            payload.decode('utf-8')
            assert valid, 'test data: %r decodes' % payload
        except UnicodeDecodeError:
            assert not valid, 'test data: %r does not decode' % payload
        for fragment in (None, 1):
            ws = WSClient(addr)
            if valid:
                ws.send_message(payload, opcode=OP_TEXT, fragment=fragment)
                got = ws.recv()
                results.append((payload, fragment, got == text(payload) or got))
                ws.close_cleanly()
            else:
                ws.try_send_raw(b''.join(ws.message_frames(payload, OP_TEXT, fragment=fragment)))
                try:
                    ws.expect_close(1007)
                    results.append((payload, fragment, True))
                except AssertionError as e:
                    results.append((payload, fragment, str(e)[:200]))
            ws.close()
    bad = [r for r in results if r[2] is not True]
    assert not bad, bad


# -- 7: close -----------------------------------------------------------------------

def test_7_1_1_message_then_close(addr):
    ws = WSClient(addr)
    ws.send_message('Hello World!')
    ws.send_close(1000)
    close, before = ws.expect_close(1000)
    assert before == [text('Hello World!')]


def test_7_1_2_two_closes(addr):
    """The second close is ignored: one close frame back, then the TCP close."""
    ws = WSClient(addr)
    ws.send_raw(build_frame(OP_CLOSE, close_payload(1000)) * 2)
    ws.close_sent = True
    close, before = ws.expect_close(1000)
    assert before == []


def test_7_1_3_ping_after_close(addr):
    ws = WSClient(addr)
    ws.send_raw(build_frame(OP_CLOSE, close_payload(1000)) + build_frame(OP_PING, b'asdf'))
    ws.close_sent = True
    close, before = ws.expect_close(1000)
    assert before == [], 'no pong after the close: %r' % before


def test_7_1_4_text_after_close(addr):
    ws = WSClient(addr)
    ws.send_raw(build_frame(OP_CLOSE, close_payload(1000)) + build_frame(OP_TEXT, b'Hello World!'))
    ws.close_sent = True
    close, before = ws.expect_close(1000)
    assert before == []


def test_7_1_5_fragment_close_fragment(addr):
    ws = WSClient(addr)
    ws.send_raw(build_frame(OP_TEXT, b'fragment1', fin=False) + build_frame(OP_CLOSE, close_payload(1000))
                + build_frame(OP_CONT, b'fragment2', fin=True))
    ws.close_sent = True
    close, before = ws.expect_close(1000)
    assert before == []


def test_7_1_6_large_message_then_close_then_ping(addr):
    """256 KiB, a small text, the close, a ping: the echoes may or may not all
    get out before the close (Autobahn: informational), but whatever comes is
    whole and in order, and no pong."""
    ws = WSClient(addr)
    big = b'BAsd7&jh23' * (256 * 1024 // 10)
    ws.send_raw(build_frame(OP_TEXT, big) + build_frame(OP_TEXT, b'Hello World!')
                + build_frame(OP_CLOSE, close_payload(1000)) + build_frame(OP_PING, b''))
    ws.close_sent = True
    close, before = ws.expect_close(1000)
    assert before in ([], [text(big)], [text(big), text('Hello World!')]), before


def test_7_3_1_close_empty_payload(addr):
    """A close without a code is answered with 1000 (or an empty close)."""
    ws = WSClient(addr)
    ws.send_close(payload=b'')
    ws.expect_close((1000, None))


def test_7_3_2_close_one_byte_payload(addr):
    ws = WSClient(addr)
    ws.send_close(payload=b'\x03')
    ws.expect_close(1002)


def test_7_3_3_close_code_only(addr):
    ws = WSClient(addr)
    ws.send_close(1000)
    ws.expect_close(1000)


def test_7_3_4_close_code_and_reason(addr):
    ws = WSClient(addr)
    ws.send_close(1000, b'Hello World!')
    ws.expect_close(1000)


def test_7_3_5_close_reason_123(addr):
    ws = WSClient(addr)
    ws.send_close(1000, b'*' * 123)
    ws.expect_close(1000)


def test_7_3_6_close_reason_124(addr):
    """A 126-byte close payload: too long for a control frame: 1002."""
    ws = WSClient(addr)
    ws.send_close(1000, b'*' * 124)
    ws.expect_close(1002)


def test_7_5_1_close_reason_not_utf8(addr):
    ws = WSClient(addr)
    ws.send_close(1000, KOSME + b'\xed\xa0\x80edited')
    ws.expect_close((1002, 1007))


VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999]


@pytest.mark.parametrize('code', VALID_CODES, ids=['7_7_%d_code%d' % (i + 1, c) for i, c in enumerate(VALID_CODES)])
def test_7_7_valid_close_code_echoed(addr, code):
    """A valid code: the server's close carries the same code (lichen's
    promise; Autobahn also takes 1000)."""
    ws = WSClient(addr)
    ws.send_close(code)
    ws.expect_close(code)


@pytest.mark.parametrize('code', [1012, 1013, 1014], ids=['7_7_x_code1012', '7_7_x_code1013', '7_7_x_code1014'])
def test_7_7_x_registered_server_codes_from_client(addr, code):
    """Not in Autobahn's lists: 1012 Service Restart, 1013 Try Again Later,
    1014 Bad Gateway (IANA's registry, newer than RFC 6455) are codes a
    server sends; lichen refuses them from a client as docs/websockets.md
    says (1002), while an application may send them (test_websocket.py).
    The websockets library would take them from either side."""
    ws = WSClient(addr)
    ws.send_close(code)
    ws.expect_close(1002)


@pytest.mark.parametrize('code', INVALID_CODES,
                         ids=['7_9_%d_code%d' % (i + 1, c) for i, c in enumerate(INVALID_CODES)])
def test_7_9_invalid_close_code_fails(addr, code):
    ws = WSClient(addr)
    ws.send_close(code)
    ws.expect_close(1002)


@pytest.mark.parametrize('code', [5000, 65535], ids=['7_13_1_code5000', '7_13_2_code65535'])
def test_7_13_close_code_out_of_range(addr, code):
    """Undefined by the RFC (Autobahn: informational); lichen treats them
    as invalid codes: 1002."""
    ws = WSClient(addr)
    ws.send_close(code)
    ws.expect_close(1002)


# -- 9: limits and performance (bounded) ------------------------------------------------

MiB = 1024 * 1024
SIZES_9 = [('1', 64 * 1024), ('2', 256 * 1024), ('3', MiB), ('4', 4 * MiB), ('5', 8 * MiB), ('6', 16 * MiB)]


def _big(n, opcode):
    if opcode == OP_TEXT:
        return (b'*' * 1024) * (n // 1024)
    return (b'\xfe' * 1024) * (n // 1024)


@pytest.mark.parametrize('op', [OP_TEXT, OP_BINARY], ids=['9_1_text', '9_2_binary'])
@pytest.mark.parametrize('case,n', SIZES_9, ids=['%s' % c[1] for c in SIZES_9])
def test_9_1_9_2_large_messages(addr, op, case, n):
    """Up to 16 MiB, lichen's default ws_max_message (exactly the limit passes)."""
    ws = WSClient(addr, timeout=30)
    payload = _big(n, op)
    ws.send_message(payload, opcode=op)
    m = ws.recv_message(timeout=30)
    assert m.opcode == op and len(m.data) == n and m.data == payload
    ws.close_cleanly()


FRAG_9 = [('1', 64), ('2', 256), ('3', 1024), ('4', 4096), ('5', 16384), ('6', 65536), ('7', 256 * 1024),
          ('8', MiB), ('9', 4 * MiB)]


def _echoed_whole(addr, payload, op, **how):
    """payload sent as one message (in fragments or chops, as how says)
    comes back whole."""
    ws = WSClient(addr, timeout=30)
    ws.send_message(payload, opcode=op, **how)
    m = ws.recv_message(timeout=30)
    assert m.opcode == op and m.data == payload
    ws.close_cleanly()


@pytest.mark.parametrize('op', [OP_TEXT, OP_BINARY], ids=['9_3_text', '9_4_binary'])
@pytest.mark.parametrize('case,frag', FRAG_9, ids=['frag%d' % c[1] for c in FRAG_9])
def test_9_3_9_4_fragmented_4mib(addr, op, case, frag):
    """A 4 MiB message in fragments of 64 bytes up to 4 MiB."""
    _echoed_whole(addr, _big(4 * MiB, op), op, fragment=frag)


CHOPS_9 = [('1', 64), ('2', 128), ('3', 256), ('4', 512), ('5', 1024), ('6', 2048)]


@pytest.mark.parametrize('op', [OP_TEXT, OP_BINARY], ids=['9_5_text', '9_6_binary'])
@pytest.mark.parametrize('case,chop', CHOPS_9, ids=['chop%d' % c[1] for c in CHOPS_9])
def test_9_5_9_6_1mib_in_chops(addr, op, case, chop):
    _echoed_whole(addr, _big(MiB, op), op, chop=chop)


RTT_9 = [('1', 0), ('2', 16), ('3', 64), ('4', 256), ('5', 1024), ('6', 4096)]


@pytest.mark.parametrize('op', [OP_TEXT, OP_BINARY], ids=['9_7_text', '9_8_binary'])
@pytest.mark.parametrize('case,n', RTT_9, ids=['len%d' % c[1] for c in RTT_9])
def test_9_7_9_8_round_trips(addr, op, case, n):
    """1000 messages one after the other, each echoed before the next."""
    ws = WSClient(addr)
    payload = (b'*' if op == OP_TEXT else b'\xfe') * n
    frame_count = 1000
    t0 = time.monotonic()
    for _ in range(frame_count):
        ws.send_message(payload, opcode=op)
        m = ws.recv_message()
        assert m.opcode == op and m.data == payload
    elapsed = time.monotonic() - t0
    ws.close_cleanly()
    assert elapsed < 10, '1000 round trips took %.1fs' % elapsed


def test_9_9_1_many_4k_frames_in_one_message(addr):
    """Bounded version of 9.9.1 (an endless message of 4 KiB frames): 2000
    frames (8 MiB) in one message, then the end: echoed whole."""
    ws = WSClient(addr, timeout=30)
    chunk = b'*' * 4096
    frame = build_frame(OP_CONT, chunk, fin=False)
    ws.send_raw(build_frame(OP_TEXT, chunk, fin=False) + frame * 1998 + build_frame(OP_CONT, chunk, fin=True))
    m = ws.recv_message(timeout=30)
    assert m == text(chunk * 2000)
    ws.close_cleanly()


# -- 10: misc -----------------------------------------------------------------------

def test_10_1_1_text_65536_fragments_1300(addr):
    """Autobahn has the peer auto-fragment; here the client sends 65536 bytes
    in 1300-byte frames and checks the whole echo."""
    ws = WSClient(addr)
    payload = b'*' * 65536
    frames = ws.message_frames(payload, OP_TEXT, fragment=1300)
    assert len(frames) == 65536 // 1300 + 1
    ws.send_raw(b''.join(frames))
    assert ws.recv() == text(payload)
    ws.close_cleanly()


# -- 12/13: permessage-deflate -------------------------------------------------------

def _json_data(n=200 * 1024):
    rnd = random.Random(12)
    items, size = [], 0
    while size < n:
        item = {'id': len(items), 'name': 'item %d' % rnd.randrange(10 ** 6),
                'tags': [rnd.choice(['alpha', 'beta', 'gamma', 'delta', 'épsilon', 'ζήτα']) for _ in range(3)],
                'value': rnd.random(), 'ok': rnd.random() < 0.5}
        s = json.dumps(item, ensure_ascii=False)
        items.append(s)
        size += len(s.encode('utf-8'))
    return ('[' + ',\n'.join(items) + ']').encode('utf-8')


def _text_data(n=200 * 1024):
    rnd = random.Random(13)
    words = ('Habe nun, ach! Philosophie, Juristerei und Medizin, und leider auch Theologie '
             'durchaus studiert, mit heißem Bemühn. Da steh ich nun, ich armer Tor! '
             'Und bin so klug als wie zuvor').split()
    out, size = [], 0
    while size < n:
        line = ' '.join(rnd.choice(words) for _ in range(rnd.randrange(4, 14)))
        out.append(line)
        size += len(line.encode('utf-8')) + 1
    return '\n'.join(out).encode('utf-8')


def _bitmap_data(n=200 * 1024):
    rnd = random.Random(14)
    return bytes((i // 512 + rnd.randrange(8)) & 0xff for i in range(n))   # smooth, noisy: a picture


def _random_data(n=200 * 1024):
    return random.Random(15).randbytes(n)                                # does not compress


DATASETS = {
    '12_1_json': (_json_data, OP_TEXT),
    '12_2_bitmap': (_bitmap_data, OP_BINARY),
    '12_3_text': (_text_data, OP_BINARY),
    '12_4_html': (lambda: (b'<tr><td class="x">%d</td><td>caf\xc3\xa9</td></tr>\n' * 5000), OP_TEXT),
    '12_5_random': (_random_data, OP_BINARY),
}

# (message size, auto-fragment size); Autobahn sends 1000 messages per case, here 20
MSG_SIZES = [(16, 0), (64, 0), (256, 0), (1024, 0), (4096, 0), (8192, 0), (16384, 0), (32768, 0), (65536, 0),
             (131072, 0), (8192, 256), (16384, 256), (32768, 256), (65536, 256), (131072, 256), (131072, 1024),
             (131072, 4096), (131072, 32768)]
COUNT = 20

OFFERS_13 = {
    '13_1_default': 'permessage-deflate; client_no_context_takeover; client_max_window_bits',
    '13_2_server_nct': 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; '
                       'client_max_window_bits',
    '13_3_server_bits9': 'permessage-deflate; server_max_window_bits=9; client_no_context_takeover; '
                         'client_max_window_bits',
    '13_4_server_bits15': 'permessage-deflate; server_max_window_bits=15; client_no_context_takeover; '
                          'client_max_window_bits',
    '13_5_nct_bits9': 'permessage-deflate; server_no_context_takeover; server_max_window_bits=9; '
                      'client_no_context_takeover; client_max_window_bits',
    '13_6_nct_bits15': 'permessage-deflate; server_no_context_takeover; server_max_window_bits=15; '
                       'client_no_context_takeover; client_max_window_bits',
    '13_7_three_offers': 'permessage-deflate; server_no_context_takeover; server_max_window_bits=9; '
                         'client_no_context_takeover; client_max_window_bits, '
                         'permessage-deflate; server_no_context_takeover; client_no_context_takeover; '
                         'client_max_window_bits, permessage-deflate; client_no_context_takeover; '
                         'client_max_window_bits',
    # and a few of the client's own parameters
    '13_x_client_bits9': 'permessage-deflate; client_max_window_bits=9',
    '13_x_client_nct_plain': 'permessage-deflate; client_no_context_takeover',
    '13_x_bare': 'permessage-deflate',
}


def check_answer(offer, params):
    """RFC 7692 section 7: an answer consistent with (one of) the offers."""
    ok = []
    for name, p in parse_extensions([offer]):
        problems = []
        if 'server_no_context_takeover' in p and 'server_no_context_takeover' not in params:
            problems.append('server_no_context_takeover requested but not in the answer')
        if 'server_max_window_bits' in p:
            if 'server_max_window_bits' not in params or \
                    int(params['server_max_window_bits']) > int(p['server_max_window_bits']):
                problems.append('server_max_window_bits not honoured')
        if 'client_max_window_bits' in params:
            if 'client_max_window_bits' not in p:
                problems.append('client_max_window_bits answered but not offered')
            elif p['client_max_window_bits'] is not True and \
                    int(params['client_max_window_bits']) > int(p['client_max_window_bits']):
                problems.append('client_max_window_bits above the offer')
        for k in ('server_max_window_bits', 'client_max_window_bits'):
            if k in params:
                assert params[k] is not True and 8 <= int(params[k]) <= 15, params
        ok.append(problems)
    assert any(not p for p in ok), 'answer %r to offer %r: %r' % (params, offer, ok)


def compression_case(addr, offer, data, opcode, size, fragment, count=COUNT):
    """`count` messages of `size` bytes taken in turn from `data`, compressed
    by the client (fragmented after compression when `fragment`), echoed;
    every reply inflated (with the window and context the server announced)
    and compared. Returns the client (closed) for its counters."""
    ws = WSClient(addr, extensions=offer)
    assert ws.deflate is not None, 'permessage-deflate refused: %r' % ws.response
    check_answer(offer, ws.deflate.params)
    pos = 0
    compressed_replies = 0
    for _ in range(count):
        if pos + size > len(data):
            pos = 0
        msg = data[pos:pos + size]
        if opcode == OP_TEXT:                  # whole code points only
            while True:
                try:
                    msg.decode('utf-8')
                    break
                except UnicodeDecodeError:
                    msg = msg[:-1]
        pos += size
        ws.send_message(msg, opcode=opcode, fragment=fragment or None, compress=True)
        m = ws.recv_message(timeout=10)
        assert m.opcode == opcode and m.data == msg, (len(m.data), len(msg))
        compressed_replies += m.compressed
    ws.close_cleanly()
    ws.compressed_replies = compressed_replies
    return ws


@pytest.mark.parametrize('dataset', list(DATASETS))
def test_12_default_offer(addr, dataset):
    """12.1-12.5: five kinds of data, every message size and fragmentation of
    Autobahn's list, with the default offer."""
    make, opcode = DATASETS[dataset]
    data = make()
    for size, fragment in MSG_SIZES:
        compression_case(addr, 'permessage-deflate; client_max_window_bits', data, opcode, size, fragment)


@pytest.mark.parametrize('offer', list(OFFERS_13))
def test_13_parameters(addr, offer):
    """13.1-13.7: the offers of Autobahn's cases (and a few more); the answer
    is checked against the offer; compressed messages of every size both ways."""
    data = _json_data()
    for size, fragment in MSG_SIZES:
        compression_case(addr, OFFERS_13[offer], data, OP_TEXT, size, fragment, count=8)


def test_13_x_server_bits8_answer(addr):
    """RFC 7692 7.1.2.1: to server_max_window_bits=8 the server answers 8 or
    declines the offer (zlib cannot deflate with a 256-byte window; it may
    decline, but never answer more than was asked); a later offer in the
    list may be taken instead."""
    for offer in ['permessage-deflate; server_max_window_bits=8',
                  'permessage-deflate; server_max_window_bits=8, permessage-deflate']:
        ws = WSClient(addr, extensions=offer)
        if ws.deflate is not None:
            check_answer(offer, ws.deflate.params)
        ws.close_cleanly()


def test_13_x_server_compresses_replies(addr):
    """A large, compressible reply comes back compressed (RSV1) and inflates."""
    data = _json_data()
    ws = compression_case(addr, 'permessage-deflate', data, OP_TEXT, 65536, 0, count=3)
    assert ws.compressed_replies == 3


def test_13_x_uncompressed_messages_still_accepted(addr):
    """With the extension on, a message without RSV1 is a plain message."""
    ws = WSClient(addr, extensions='permessage-deflate')
    assert ws.deflate
    ws.send_message('plain text')
    assert ws.recv_message() == text('plain text')
    ws.send_message(b'compressed', compress=True)
    assert ws.recv_message() == binary(b'compressed')
    ws.close_cleanly()


def test_13_x_context_takeover_across_messages(addr):
    """Without client_no_context_takeover the client's second message refers
    back into the first (a back-reference the server must resolve)."""
    ws = WSClient(addr, extensions='permessage-deflate')
    assert ws.deflate and not ws.deflate.client_nct
    msg = b'a fairly unique sentence that repeats: 0123456789' * 3
    for _ in range(3):
        ws.send_message(msg, compress=True)
        assert ws.recv_message().data == msg
    ws.close_cleanly()


def test_13_x_rsv1_on_continuation_fails(addr):
    ws = WSClient(addr, extensions='permessage-deflate')
    assert ws.deflate
    comp = ws.deflate.compress(b'Hello, world! Hello, world!')
    ws.try_send_raw(build_frame(OP_TEXT, comp[:4], fin=False, rsv=RSV1) + build_frame(OP_CONT, comp[4:], rsv=RSV1))
    failed(ws, 1002)


def test_13_x_rsv1_on_control_frame_fails(addr):
    ws = WSClient(addr, extensions='permessage-deflate')
    assert ws.deflate
    ws.try_send_raw(build_frame(OP_PING, b'\x02\x00', rsv=RSV1))
    failed(ws, 1002)


def test_13_x_garbage_deflate_data_fails(addr):
    """A compressed message that does not inflate: the connection fails
    (1002 or 1007; RFC 7692 leaves it to the implementation)."""
    ws = WSClient(addr, extensions='permessage-deflate')
    assert ws.deflate
    ws.try_send_raw(build_frame(OP_BINARY, b'\xff\xff\xff\xff\xff\xff\xff', rsv=RSV1))
    ws.expect_close((1002, 1007))


def test_13_x_compressed_invalid_utf8_fails(addr):
    ws = WSClient(addr, extensions='permessage-deflate')
    assert ws.deflate
    ws.try_send_raw(b''.join(ws.message_frames(INVALID_6_3, OP_TEXT, compress=True)))
    failed(ws, 1007)


def test_13_x_inflated_size_over_max_message(ws_server):
    """A small compressed message that inflates past ws_max_message: 1009
    (the limit counts the inflated bytes; a deflate bomb is stopped)."""
    addr = ws_server(ws_max_message=MiB)
    ws = WSClient(addr, extensions='permessage-deflate')
    assert ws.deflate
    frames = ws.message_frames(b'\x00' * (4 * MiB), OP_BINARY, compress=True)
    assert sum(map(len, frames)) < 10000
    ws.try_send_raw(b''.join(frames))
    failed(ws, 1009)


def test_13_x_no_compression_option(ws_server):
    """ws_compression=False: the offer is ignored (no extension in the answer),
    and RSV1 is then a protocol error."""
    addr = ws_server(ws_compression=False)
    ws = WSClient(addr, extensions='permessage-deflate; client_max_window_bits')
    assert ws.deflate is None and not ws.response.has('sec-websocket-extensions')
    ws.send_message('still works')
    assert ws.recv_message() == text('still works')
    ws.try_send_raw(build_frame(OP_TEXT, b'\xf2\x48\xcd\xc9\xc9\x07\x00', rsv=RSV1))
    failed(ws, 1002)


def test_13_x_tail_not_sent(addr):
    """The server strips 00 00 ff ff from each compressed message (RFC 7692 7.2.1)."""
    ws = WSClient(addr, extensions='permessage-deflate; server_no_context_takeover')
    assert ws.deflate and ws.deflate.server_nct
    ws.send_message(b'x' * 5000, compress=True)
    m = ws.recv_message()
    assert m.data == b'x' * 5000
    raw = [f for f in ws.events if f.opcode in (OP_BINARY, OP_CONT)]
    if m.compressed:
        assert not b''.join(f.payload for f in raw).endswith(TAIL)
    ws.close_cleanly()

