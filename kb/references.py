"""The primary sources every rule cites (spec `references.md`, version 1).

They replace the seed guideline's unnumbered "1-5" citations, some of which
named bodies that never made the statement. Rules cite these ids only; a test
checks that every cited id exists here.
"""

from __future__ import annotations

from dataclasses import dataclass

from kb.model import Certainty


@dataclass(frozen=True)
class Reference:
    id: str
    citation: str
    doi: str
    supports: str
    certainty: Certainty


REFERENCES: tuple[Reference, ...] = (
    Reference(
        "ICHD3",
        "Headache Classification Committee of the IHS. The International Classification of "
        "Headache Disorders, 3rd ed. Cephalalgia 2018;38(1):1-211.",
        "10.1177/0333102417738202",
        "11.2.1 cervicogenic headache; 1.1 migraine without aura (>=5 attacks, 4-72 h, 2 of 4, "
        "1 of 2); 7.2.3 SIH (orthostatic pattern cannot be relied upon); 7.7 Chiari "
        "(cough/Valsalva, occipital, < 5 min); imaging findings are not firm evidence of causation",
        Certainty.CONSENSUS,
    ),
    Reference(
        "CHISG1998",
        "Sjaastad O, Fredriksen TA, Pfaffenrath V. Cervicogenic headache: diagnostic criteria. "
        "Headache 1998;38(6):442-445.",
        "10.1046/j.1526-4610.1998.3806442.x",
        "side-locked unilateral pain starting in the neck; provocation by neck movement or "
        "pressure; reduced range of motion",
        Certainty.CONSENSUS,
    ),
    Reference(
        "FREEMAN2011",
        "Freeman R, Wieling W, Axelrod FB, et al. Consensus statement on the definition of "
        "orthostatic hypotension, neurally mediated syncope and the postural tachycardia "
        "syndrome. Clin Auton Res 2011;21(2):69-72.",
        "10.1007/s10286-011-0119-5",
        "OH: sustained fall of >= 20 mmHg systolic or >= 10 mmHg diastolic within 3 min of "
        "standing; POTS >= 30 bpm (>= 40 at 12-19) without OH",
        Certainty.CONSENSUS,
    ),
    Reference(
        "SHELDON2015",
        "Sheldon RS, Grubb BP, Olshansky B, et al. 2015 Heart Rhythm Society expert consensus "
        "statement on the diagnosis and treatment of POTS, IST and VVS. Heart Rhythm "
        "2015;12(6):e41-e63.",
        "10.1016/j.hrthm.2015.03.029",
        "POTS heart-rate criteria and the absence of OH",
        Certainty.CONSENSUS,
    ),
    Reference(
        "VERNINO2021",
        "Vernino S, et al. POTS: state of the science and clinical care from a 2019 NIH expert "
        "consensus meeting, part 1. Auton Neurosci 2021;235:102828.",
        "10.1016/j.autneu.2021.102828",
        "POTS also needs symptoms >= 3 months and no other cause",
        Certainty.CONSENSUS,
    ),
    Reference(
        "CHEEMA2023",
        "Cheema S, Anderson J, Angus-Leppan H, et al. Multidisciplinary consensus guideline for "
        "the diagnosis and management of spontaneous intracranial hypotension. J Neurol "
        "Neurosurg Psychiatry 2023;94(10):835-843.",
        "10.1136/jnnp-2023-331166",
        "differential of orthostatic headache (POTS, OH, SIH); the '> 50 % better within 2 h of "
        "lying flat' history heuristic (heuristic only)",
        Certainty.CONSENSUS,
    ),
    Reference(
        "JULL2002",
        "Jull G, Trott P, Potter H, et al. A randomized controlled trial of exercise and "
        "manipulative therapy for cervicogenic headache. Spine 2002;27(17):1835-1843.",
        "10.1097/00007632-200209010-00004",
        "6-week programme, follow-up at 3, 6 and 12 months; manipulative therapy and exercise "
        "each effective at 12 months; the combination was not significantly better than either "
        "alone",
        Certainty.MODERATE,
    ),
    Reference(
        "BINI2022",
        "Bini P, et al. The effectiveness of manual and exercise therapy on headache intensity "
        "and frequency among patients with cervicogenic headache: a systematic review and "
        "meta-analysis. Chiropr Man Therap 2022;30:49.",
        "10.1186/s12998-022-00459-9",
        "moderate-to-large effects short-term against sham; small long-term",
        Certainty.LOW,
    ),
    Reference(
        "BLANPIED2017",
        "Blanpied PR, Gross AR, Elliott JM, et al. Neck Pain: Revision 2017. J Orthop Sports "
        "Phys Ther 2017;47(7):A1-A83.",
        "10.2519/jospt.2017.0302",
        "neck pain with headache: manipulation/mobilisation with neck and shoulder-girdle "
        "strengthening and endurance exercise (grade B)",
        Certainty.MODERATE,
    ),
    Reference(
        "COTE2019",
        "Cote P, Yu H, Shearer HM, et al. Non-pharmacological management of persistent "
        "headaches associated with neck pain: a clinical practice guideline from the OPTIMa "
        "collaboration. Eur J Pain 2019;23(6):1051-1070.",
        "10.1002/ejp.1374",
        "rule out structural pathology and migraine first; low-load endurance exercise or "
        "manual therapy for CGH > 3 months",
        Certainty.MODERATE,
    ),
    Reference(
        "VADOD2023",
        "Sico JJ, Antonovich NM, Ballard-Hernandez J, et al. Synopsis of the 2023 VA/DoD "
        "clinical practice guideline for the management of headache. Ann Intern Med 2024.",
        "10.7326/ANNALS-24-00551",
        "aerobic exercise and progressive strength training; occipital nerve block for "
        "short-term relief; insufficient evidence for repeated blocks; amitriptyline for "
        "chronic tension-type headache (mostly migraine/TTH evidence)",
        Certainty.LOW,
    ),
    Reference(
        "NAJA2006",
        "Naja ZM, et al. Occipital nerve blockade for cervicogenic headache: a double-blind "
        "randomized controlled clinical trial. Pain Pract 2006;6(2):89-95.",
        "10.1111/j.1533-2500.2006.00068.x",
        "~50 % pain reduction at 2 weeks (n = 50)",
        Certainty.LOW,
    ),
    Reference(
        "BOGDUK2009",
        "Bogduk N, Govind J. Cervicogenic headache: an assessment of the evidence on clinical "
        "diagnosis, invasive tests, and treatment. Lancet Neurol 2009;8(10):959-968.",
        "10.1016/S1474-4422(09)70209-1",
        "controlled diagnostic blocks establish a cervical source; facet procedures",
        Certainty.LOW,
    ),
    Reference(
        "WANG2014",
        "Wang E, Wang D. Treatment of cervicogenic headache with cervical epidural steroid "
        "injection. Curr Pain Headache Rep 2014;18(9):442.",
        "10.1007/s11916-014-0442-3",
        "epidural steroid injection remains controversial; no randomised trial",
        Certainty.VERY_LOW,
    ),
    Reference(
        "BENDTSEN2010",
        "Bendtsen L, Evers S, Linde M, et al. EFNS guideline on the treatment of tension-type "
        "headache. Eur J Neurol 2010;17(11):1318-1325.",
        "10.1111/j.1468-1331.2010.03070.x",
        "amitriptyline first choice for chronic tension-type headache prophylaxis (TTH, not CGH)",
        Certainty.MODERATE,
    ),
    Reference(
        "NAKASHIMA2015",
        "Nakashima H, et al. Abnormal findings on magnetic resonance images of the cervical "
        "spines in 1211 asymptomatic subjects. Spine 2015;40(6):392-398.",
        "10.1097/BRS.0000000000000775",
        "disc bulging in most asymptomatic adults",
        Certainty.MODERATE,
    ),
    Reference(
        "BEAR2017",
        "Bear JJ, Gelfand AA, Goadsby PJ, Bass N. Occipital headaches and neuroimaging in "
        "children. Neurology 2017;89(5):469-474.",
        "10.1212/WNL.0000000000004186",
        "occipital location alone, with a normal examination, was not associated with "
        "significant pathology",
        Certainty.LOW,
    ),
    Reference(
        "BILLER2014",
        "Biller J, Sacco RL, Albuquerque FC, et al. Cervical arterial dissections and "
        "association with cervical manipulative therapy. Stroke 2014;45(10):3155-3174.",
        "10.1161/STR.0000000000000016",
        "Horner syndrome, neurological deficit, sudden severe neck pain/headache suggest "
        "dissection; caution with manipulation",
        Certainty.CONSENSUS,
    ),
    Reference(
        "RUSHTON2023",
        "Rushton A, Carlesso LC, Flynn T, et al. International framework for examination of "
        "the cervical region for potential of vascular pathologies of the neck prior to "
        "musculoskeletal intervention. J Orthop Sports Phys Ther 2023;53(1):7-22.",
        "10.2519/jospt.2022.11147",
        "screen before manual therapy; do not proceed when vascular pathology is suspected",
        Certainty.CONSENSUS,
    ),
    Reference(
        "DO2019",
        "Do TP, Remmers A, Schytz HW, et al. Red and orange flags for secondary headaches in "
        "clinical practice: SNNOOP10 list. Neurology 2019;92(3):134-144.",
        "10.1212/WNL.0000000000006697",
        "red flags: systemic illness, neoplasm, deficit, sudden onset, papilloedema, "
        "progression, pregnancy, immune compromise, post-traumatic onset",
        Certainty.CONSENSUS,
    ),
)

REFERENCES_BY_ID: dict[str, Reference] = {reference.id: reference for reference in REFERENCES}
