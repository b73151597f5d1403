"""The example Access Server's command line refuses what it cannot serve."""

from __future__ import annotations

import pytest

from aauth_server.access import AccessRequest, Issue, RequireClaims, RequireClarification
from example_apps.access_server import ExamplePolicy, build, build_parser


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "--issuer is required unless --dev"),
        (["--dev", "--require-claims", "sub"], "never asks for sub"),
        (["--dev", "--require-claims", "email", "aud"], "protocol claims cannot come from the PS"),
    ],
)
def test_refused_arguments(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = build_parser()
    with pytest.raises(SystemExit):
        build(parser.parse_args(argv), parser)
    assert message in capsys.readouterr().err


def test_the_example_policy_asks_claims_then_the_question_then_issues() -> None:
    policy = ExamplePolicy(["email"], "Why?")
    base = dict(
        ps="https://ps.example",
        resource="https://r.example",
        scope=("a",),
        sub="s",
        agent={},
        presented_type="aa-person+jwt",
    )
    assert isinstance(policy(AccessRequest(**base)), RequireClaims)  # type: ignore[arg-type]
    with_claims = AccessRequest(**base, claims={"email": "e"})  # type: ignore[arg-type]
    assert isinstance(policy(with_claims), RequireClarification)
    answered = AccessRequest(**base, claims={"email": "e"}, clarifications=(("Why?", "x"),))  # type: ignore[arg-type]
    verdict = policy(answered)
    assert isinstance(verdict, Issue) and dict(verdict.claims) == {"email": "e"}
