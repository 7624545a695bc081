"""The primary sources every rule cites (spec `references.md`, version 2).

They replace the seed guideline's unnumbered "1-5" citations, some of which
named bodies that never made the statement. Rules cite these ids only; a test
checks that every cited id exists here.

Version 2 corrects attributions and what each source is said to support: the
VA/DoD synopsis covers migraine and tension-type headache, so its occipital-block
statements are migraine evidence; Naja 2006 blocked the greater and lesser
occipital nerves, measured analgesic use and is now very low certainty for a
greater occipital block alone; Cote 2019 advises against combining manipulation,
mobilisation and exercise; the dissection and SNNOOP10 lists are given in full.
It adds the FDA's 2014 epidural-steroid safety communication (FDA2014), the ACR
1990 giant-cell arteritis criteria (HUNDER1990) and Govind 2003 on third-occipital
neurotomy (GOVIND2003). FDA2014 has no DOI, so a reference may carry a URL
instead; `Reference.locator` gives whichever it has.
"""

from __future__ import annotations

from dataclasses import dataclass

from kb.model import Certainty


@dataclass(frozen=True)
class Reference:
    id: str
    citation: str
    doi: str | None
    supports: str
    certainty: Certainty
    url: str | None = None

    def __post_init__(self) -> None:
        if self.doi is None and self.url is None:
            raise ValueError(f"reference {self.id} needs a DOI or a URL")

    @property
    def locator(self) -> str:
        """Where to find the source: `doi:<doi>` when it has a DOI, else its URL."""
        if self.doi is not None:
            return f"doi:{self.doi}"
        if self.url is not None:
            return self.url
        raise ValueError(f"reference {self.id} needs a DOI or a URL")


REFERENCES: tuple[Reference, ...] = (
    Reference(
        "ICHD3",
        "Headache Classification Committee of the IHS. The International Classification of "
        "Headache Disorders, 3rd ed. Cephalalgia 2018;38(1):1-211.",
        "10.1177/0333102417738202",
        "11.2.1 cervicogenic headache; 1.1 migraine without aura (>=5 attacks, 4-72 h, 2 of 4, "
        "1 of 2); 7.2.3 SIH (orthostatic pattern 'cannot be relied upon'); 7.7 Chiari "
        "(cough/Valsalva, occipital, < 5 min); note that imaging findings are not firm evidence "
        "of causation",
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
        "manual therapy for CGH > 3 months; advises against a multimodal programme combining "
        "manipulation, mobilisation and exercise",
        Certainty.MODERATE,
    ),
    Reference(
        "VADOD2023",
        "Sico JJ, Antonovich NM, Ballard-Hernandez J, et al. Synopsis of the 2023 VA/DoD "
        "clinical practice guideline for the management of headache. Ann Intern Med 2024.",
        "10.7326/ANNALS-24-00551",
        "aerobic exercise and progressive strength training; insufficient evidence for repeated "
        "blocks; amitriptyline for chronic tension-type headache; its scope is migraine and "
        "tension-type headache: its occipital-block statements are migraine evidence (indirect "
        "for CGH)",
        Certainty.LOW,
    ),
    Reference(
        "NAJA2006",
        "Naja ZM, et al. Occipital nerve blockade for cervicogenic headache: a double-blind "
        "randomized controlled clinical trial. Pain Pract 2006;6(2):89-95.",
        "10.1111/j.1533-2500.2006.00068.x",
        "nerve-stimulator-guided greater and lesser occipital blocks (plus a facial nerve block "
        "in some), primary outcome analgesic use, ~50 % pain reduction at 2 weeks (n = 50) "
        "(very low certainty for a greater occipital block alone in CGH)",
        Certainty.VERY_LOW,
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
        "presenting features of dissection: unilateral headache or posterior neck pain, Horner "
        "syndrome, pulsatile tinnitus, lower cranial-nerve palsies, retinal or cerebral "
        "ischaemia (incl. transient); mechanical forces to the neck; inform patients of the "
        "association before manipulation",
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
        "red flags: systemic symptoms incl. fever, neoplasm, neurological deficit incl. "
        "decreased consciousness, sudden onset, older age (onset after 65), pattern change or "
        "recent onset, positional, precipitated by cough or exercise, papilloedema, "
        "progression, pregnancy or puerperium, painful eye with autonomic features, "
        "post-traumatic onset, immune pathology, painkiller overuse",
        Certainty.CONSENSUS,
    ),
    Reference(
        "FDA2014",
        "U.S. Food and Drug Administration. Drug Safety Communication: FDA requires label "
        "changes to warn of rare but serious neurologic problems after epidural corticosteroid "
        "injections for pain. 23 April 2014.",
        None,
        "rare but serious events after epidural corticosteroid injection: loss of vision, "
        "stroke, paralysis, death (regulatory)",
        Certainty.CONSENSUS,
        url="https://www.fda.gov/drugs/drug-safety-and-availability/"
        "fda-drug-safety-communication-fda-requires-label-changes-warn-rare-serious-neurologic-"
        "problems-after",
    ),
    Reference(
        "HUNDER1990",
        "Hunder GG, Bloch DA, Michel BA, et al. The American College of Rheumatology 1990 "
        "criteria for the classification of giant cell arteritis. Arthritis Rheum "
        "1990;33(8):1122-1128.",
        "10.1002/art.1780330810",
        "age at onset >= 50 as a giant-cell arteritis criterion",
        Certainty.CONSENSUS,
    ),
    Reference(
        "GOVIND2003",
        "Govind J, King W, Bailey B, Bogduk N. Radiofrequency neurotomy for the treatment of "
        "third occipital headache. J Neurol Neurosurg Psychiatry 2003;74(1):88-93.",
        "10.1136/jnnp.74.1.88",
        "complete relief in most patients selected by controlled third-occipital-nerve blocks "
        "(uncontrolled series)",
        Certainty.LOW,
    ),
)

REFERENCES_BY_ID: dict[str, Reference] = {reference.id: reference for reference in REFERENCES}
