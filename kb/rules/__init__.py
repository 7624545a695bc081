"""The rulesets: one module per recommendation group, in catalogue order."""

from kb.model import RuleGroup
from kb.rules import cautions, diagnosis, information, mimics, treatment

GROUPS: tuple[RuleGroup, ...] = (
    diagnosis.GROUP,
    mimics.GROUP,
    treatment.GROUP,
    cautions.GROUP,
    information.GROUP,
)
