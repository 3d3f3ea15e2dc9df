"""Run every parser on an input and report each disagreement with lichen."""

import collections

from .parsers import PARSERS

# Counts of a run (inputs, agreements, known differences by id): printed in
# pytest's summary by tests/conftest.py.
STATS = collections.Counter()


def verdict(o):
    return o.kind


def fields_differ(a, b):
    """Names of the fields that differ between two accepted outcomes."""
    names = ('method', 'target', 'version', 'headers', 'framing', 'body',
             'consumed')
    out = []
    for n in names:
        x, y = getattr(a, n), getattr(b, n)
        if n == 'headers':
            x = tuple((k, v.lower()) for k, v in x)
            y = tuple((k, v.lower()) for k, v in y)
        if x != y:
            out.append(n)
    return out


def compare(data):
    """{peer: (lichen_outcome, peer_outcome, what)} for each peer that
    disagrees; `what` is 'kind' or a tuple of differing field names."""
    lichen = PARSERS['lichen'](data)
    out = {}
    for peer in ('llhttp', 'h11'):
        o = PARSERS[peer](data)
        if o.kind != lichen.kind:
            out[peer] = (lichen, o, 'kind')
        elif o.kind == 'accept':
            diff = fields_differ(lichen, o)
            if diff:
                out[peer] = (lichen, o, tuple(diff))
    return out
