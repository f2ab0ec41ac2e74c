"""The conformance kit (qconvert.testing.conformance) for the pytorch target."""

from qconvert.testing.conformance import Conformance


class TestConformance(Conformance):
    target_name = "pytorch"
