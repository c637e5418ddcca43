"""bench/report.py's verdicts on the static-file targets, from made-up samples."""

from __future__ import annotations

import pytest

from bench.load import LoadResult
from bench.report import STATIC_REFERENCE, LoadSample, Results, targets


def _verdict(rps: dict[str, float], busy: dict[str, float]) -> tuple[str, bool | None]:
    """:returns: the ``file`` target's measured text and ``met`` for one round of these figures."""
    results = Results()
    for server in ("houweb", STATIC_REFERENCE):
        result = LoadResult(
            rps[server], 1.0, 2.0, 0, int(rps[server] * 3), client_busy=busy[server]
        )
        results.add_load("file", server, LoadSample(result, 0, 0.0005))
    (target,) = [t for t in targets(results) if t.what.startswith("file:")]
    shown = target.verdict or {True: "met", False: "NOT met", None: "-"}[target.met]
    return shown, target.met


@pytest.mark.parametrize(
    ("rps", "busy", "expected"),
    [
        # wrk had CPU to spare against both: req/s decides.
        ({"houweb": 1500, STATIC_REFERENCE: 1000}, {"houweb": 0.5, STATIC_REFERENCE: 0.3}, True),
        ({"houweb": 1100, STATIC_REFERENCE: 1000}, {"houweb": 0.5, STATIC_REFERENCE: 0.3}, False),
        # wrk the limit against houweb only: houweb could do more than it
        # showed, so a ratio over the target is shown, one under it is not.
        ({"houweb": 1500, STATIC_REFERENCE: 1000}, {"houweb": 1.0, STATIC_REFERENCE: 0.3}, True),
        ({"houweb": 1100, STATIC_REFERENCE: 1000}, {"houweb": 1.0, STATIC_REFERENCE: 0.3}, None),
        # wrk the limit against twisted.web only: twisted.web could do more
        # than it showed, so a ratio under the target is shown, one over it is not.
        ({"houweb": 1100, STATIC_REFERENCE: 1000}, {"houweb": 0.5, STATIC_REFERENCE: 1.0}, False),
        ({"houweb": 1500, STATIC_REFERENCE: 1000}, {"houweb": 0.5, STATIC_REFERENCE: 1.0}, None),
        # wrk the limit against both: req/s shows neither.
        ({"houweb": 1500, STATIC_REFERENCE: 1000}, {"houweb": 1.0, STATIC_REFERENCE: 1.0}, None),
        ({"houweb": 1100, STATIC_REFERENCE: 1000}, {"houweb": 1.0, STATIC_REFERENCE: 1.0}, None),
    ],
)
def test_a_static_target_is_met_only_where_req_s_can_show_it(rps, busy, expected):
    shown, met = _verdict(rps, busy)
    assert met is expected
    if expected is None:
        assert shown == "not shown: wrk was the limit"
