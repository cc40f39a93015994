"""The ``relaykit`` command: ``relaykit demo`` runs end to end on embedded local providers."""

from __future__ import annotations

import pytest

from relaykit.cli import main


def test_demo_exits_zero_and_shows_who_served_each_call(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["demo"])

    out = capsys.readouterr().out
    assert status == 0
    served = [line.strip() for line in out.splitlines() if "served by" in line]
    assert len(served) == 4  # plain, stream, tool call, failover
    assert "served by RelayInfo(target='primary', attempts=1, cached=False)" in served[:3]
    assert served[3] == "served by RelayInfo(target='backup', attempts=2, cached=False)"
    assert "Hello! I am the primary provider." in out
    assert "get_weather" in out and "Paris" in out
    assert "all fail" in out and "AllTargetsFailedError" in out
    assert "upstream requests:" in out


def test_an_unknown_command_exits_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["nonsense"])

    assert caught.value.code == 2
    assert "demo" in capsys.readouterr().err
