"""Differential testing of lichen's request parser against llhttp (strict)
and h11: adapters, input families and the list of known differences."""
