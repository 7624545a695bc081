"""Diagnosis: is cervicogenic headache supported?

Source: Sjaastad, Fredriksen, Pfaffenrath. Cervicogenic headache: diagnostic
criteria (CHISG1998), with ICHD-3 11.2.1 (ICHD3). The CHISG major criteria ask
for side-locked unilateral pain that starts in the neck and spreads forward,
provoked by neck movement or by external pressure over the upper neck (criterion
Ia; sustained awkward posture alone does not satisfy it), with reduced range of
motion of the neck. Imaging offers no diagnostic criteria (see cautions).

When: the headache is unilateral, side-locked, starts in the neck and radiates
      to the eye, forehead or temple; and it is provoked by neck movement or by
      occipital pressure; and the cervical exam shows reduced range of motion
      with at least one of cervical spine, paraspinal or suboccipital
      tenderness (myofascial sensitivity alone does not count: ICHD-3 codes
      headache from cervical myofascial trigger points as tension-type).
Then: dx.cervicogenic_headache_supported.
"""

from __future__ import annotations

from typing import Any

from durable.lang import c, m

from kb.model import Certainty, Evidence, Kind, Rule, RuleGroup, Stage
from kb.rules.patterns import DIAGNOSIS, any_true, fact, is_true

DIAGNOSIS_CITATIONS = ("CHISG1998", "ICHD3")


def headache_pattern_and_provocation() -> Any:
    """The headache parts of the criteria: pattern (CHISG) and provocation (Ia)."""
    return (
        fact("headache")
        & (m.laterality == "unilateral")
        & is_true("side_locked")
        & is_true("starts_in_neck")
        & is_true("radiates_oculo_fronto_temporal")
        & any_true("provoked_by_neck_movement", "provoked_by_occipital_pressure")
    )


def neck_findings() -> Any:
    return (
        fact("cervical_exam")
        & is_true("rom_reduced")
        & any_true(
            "cervical_spine_tenderness",
            "paraspinal_tenderness",
            "suboccipital_tenderness",
        )
    )


CERVICOGENIC_HEADACHE = Rule(
    id="DX-01",
    code=DIAGNOSIS,
    kind=Kind.DIAGNOSIS_SUPPORTED,
    title="Cervicogenic headache supported",
    detail=(
        "Side-locked unilateral headache starting in the neck and spreading to the eye, "
        "forehead or temple, provoked by neck movement or occipital pressure, with reduced "
        "cervical range of motion and cervical spine, paraspinal or suboccipital tenderness: "
        "the findings are consistent with the CHISG clinical criteria for cervicogenic "
        "headache. An ICHD-3 11.2.1 diagnosis also needs evidence of a cervical disorder and a "
        "second causal criterion, for example relief by a controlled diagnostic block. Not "
        "counting sustained posture as a provocation is this knowledge base's deliberate "
        "restriction, not CHISG's. Exclude mimics before treating."
    ),
    fires_when=(
        "The headache is unilateral, side-locked, starts in the neck and radiates to the eye, "
        "forehead or temple; it is provoked by neck movement or occipital pressure (posture "
        "alone does not count); and the cervical exam shows reduced range of motion with at "
        "least one of cervical spine, paraspinal or suboccipital tenderness (myofascial "
        "sensitivity alone does not count)."
    ),
    citations=DIAGNOSIS_CITATIONS,
    evidence=Evidence(
        "Expert consensus criteria (CHISG, ICHD-3); no validated imaging or laboratory test; "
        "ICHD-3 needs a causal criterion the bedside findings cannot give.",
        Certainty.CONSENSUS,
    ),
    stage=Stage.FINDINGS,
    when=((c.headache << headache_pattern_and_provocation(), c.exam << neck_findings()),),
)

GROUP = RuleGroup(
    name="diagnosis",
    source="CHISG1998 major criteria with ICHD-3 11.2.1: confirm the diagnosis.",
    rules=(CERVICOGENIC_HEADACHE,),
)
