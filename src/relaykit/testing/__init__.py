"""Test kit for relaykit users: fakes that exercise a configuration without a real provider."""

from relaykit.backends.function import FunctionBackend
from relaykit.testing.clock import FakeClock
from relaykit.testing.fake_provider import FakeProvider, RecordedRequest, Reply

__all__ = ["FakeClock", "FakeProvider", "FunctionBackend", "RecordedRequest", "Reply"]
