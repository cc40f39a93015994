"""Test kit for relaykit users: fakes that exercise a configuration without a real provider."""

from relaykit.testing.fake_provider import FakeProvider, RecordedRequest, Reply

__all__ = ["FakeProvider", "RecordedRequest", "Reply"]
