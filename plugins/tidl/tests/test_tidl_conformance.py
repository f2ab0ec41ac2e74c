"""The conformance kit (qconvert.testing.conformance) for the tidl target."""

from qconvert.testing.conformance import Conformance


class TestConformance(Conformance):
    target_name = "tidl"
