"""The ``relaykit`` command: ``relaykit demo`` runs end to end on embedded local providers."""

from __future__ import annotations

import pytest

from relaykit.cli import main


def test_demo_exits_zero_and_shows_who_served_each_call(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["demo"])

    out = capsys.readouterr().out
    assert status == 0
    served = [line.strip() for line in out.splitlines() if "served by" in line]
    assert served == [
        "served by primary, attempts=1, cached=False",  # plain
        "served by primary, attempts=1, cached=False",  # stream
        "served by primary, attempts=1, cached=False",  # tool call
        "served by primary, attempts=0, cached=True",  # cache hit names who answered first
        "served by backup, attempts=2, cached=False",  # 429 on primary: no wait, backup
        "served by backup, attempts=3, cached=False",  # both 503, retried, primary skipped
        "served by backup, attempts=1, cached=False",  # primary's circuit open: no request
    ]
    assert "Hello! I am the primary provider." in out
    assert "get_weather" in out and "Paris" in out
    assert "backup continued it: 'one two three four'" in out
    assert "no request sent (True)" in out
    assert "all fail    AllTargetsFailedError" in out
    assert "upstream requests: primary 6, backup 6" in out


def test_an_unknown_command_exits_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["nonsense"])

    assert caught.value.code == 2
    assert "demo" in capsys.readouterr().err
