"""The conformance kit (qconvert.testing.conformance) for the tflite target."""

from qconvert.testing.conformance import Conformance


class TestConformance(Conformance):
    target_name = "tflite"
