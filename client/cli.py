"""Command line for the decision-support service.

    python -m client [--target HOST:PORT] [--timeout S] evaluate FILE.json [--json] [--color]
    python -m client [--target HOST:PORT] [--timeout S] explain FILE.json CODE [--json]
    python -m client [--target HOST:PORT] [--timeout S] kb [--json]
    python -m client [--target HOST:PORT] session TIMELINE.jsonl [--session-id ID]
                     [--json] [--no-delay] [--delete]
    python -m client [--target HOST:PORT] watch SESSION_ID [--json]
    python -m client [--target HOST:PORT] evaluate-fhir BUNDLE.json [--as-of ISO] [--json]
    python -m client [--target HOST:PORT] translate-fhir BUNDLE.json [--as-of ISO]
    python -m client [--target HOST:PORT] questionnaire

FILE.json is `{"description": "...", "facts": [{"id": ..., "type": ..., "fields": {...}}]}`
("description" is optional and printed as a header).

TIMELINE.jsonl replays a patient's session: one JSON object per line (blank
lines are skipped), each one batch:
`{"description": "...", "delay": 0.5, "retract": ["id", ...], "assert": [facts],
"expected_version": 3}` (every key optional). Each batch waits `delay` seconds,
then the conclusions it added, updated and withdrew are printed as they stream,
then the session's new version. A new session is opened unless `--session-id`
resumes one; its id is printed so it can be resumed later. A session resumed
after the knowledge base was upgraded first prints what the upgrade changed.

BUNDLE.json is a FHIR R4 Bundle (Patient, vital-sign Observations, Conditions,
the assessment QuestionnaireResponse); `--as-of` is the instant the decision is
made (ISO 8601 with a zone; default now). `evaluate-fhir` prints what the
service used and ignored, then the conclusions with the FHIR records behind
each; `translate-fhir` prints the facts and the report as JSON;
`questionnaire` prints the assessment Questionnaire the service reads.

`watch` follows a session without writing to it: its conclusions now, then
every batch any writer commits (on any replica sharing the store), as it
happens, until interrupted or the session is deleted or expires (exit 2,
NOT_FOUND). A watcher that falls behind gets a fresh snapshot.

Conclusions are printed as they arrive, so a slow evaluation shows its first
findings at once. `--json` prints one JSON object per line for machines.

Transport security (before the command): `--tls` (system roots) or
`--tls-ca CA.pem` for TLS, `--tls-cert` and `--tls-key` for a client
certificate (mutual TLS), `--token-file FILE` for a bearer token (its first
non-blank line; or the CDS_TOKEN environment variable). A token is never
taken on the command line, where other users could read it in `ps`.

Exit status: 0 success, 1 the input file is unusable, 2 the server rejected
the request (the error and its field violations go to stderr), 3 the server
is unreachable.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import textwrap
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from google.protobuf import json_format

from client.api import (
    DEFAULT_TARGET,
    DEFAULT_TIMEOUT,
    BatchApplied,
    BatchRejected,
    CdsClient,
    CdsError,
    CdsUnavailable,
    Conclusion,
    ConclusionChange,
    SessionSnapshot,
    Summary,
    kind_name,
    urgency_name,
)

EXIT_OK = 0
EXIT_BAD_INPUT = 1
EXIT_REJECTED = 2
EXIT_UNREACHABLE = 3

# The order a clinician reads them in: what it is, what else it could be, what
# to do, what to watch out for, what is missing.
KIND_ORDER = (
    "DIAGNOSIS_SUPPORTED",
    "MIMIC_SUSPECTED",
    "NEXT_TREATMENT_STEP",
    "CAUTION",
    "INFORMATION_NEEDED",
)
_BOLD_RED = "\033[1;31m"
_YELLOW = "\033[33m"
_BOLD = "\033[1m"
_RESET = "\033[0m"
_URGENCY_STYLE = {"EMERGENT": _BOLD_RED, "URGENT": _YELLOW}
_WIDTH = 100


class InputFileError(ValueError):
    """FILE.json cannot be read or does not have the documented shape."""


@dataclass(frozen=True)
class FactsFile:
    description: str | None
    facts: list[dict[str, Any]]


def load_facts_file(path: str | os.PathLike[str]) -> FactsFile:
    """Read and shape-check FILE.json; errors name the file and the place, never a value."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise InputFileError(f"{path}: cannot read: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise InputFileError(f"{path}: not UTF-8 text") from error
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputFileError(
            f"{path}: invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from error
    if not isinstance(document, dict):
        raise InputFileError(f'{path}: expected an object with a "facts" list')
    description = document.get("description")
    if description is not None and not isinstance(description, str):
        raise InputFileError(f'{path}: "description" must be a string')
    facts = document.get("facts")
    if not isinstance(facts, list):
        raise InputFileError(f'{path}: expected "facts" to be a list of facts')
    for index, fact in enumerate(facts):
        if not isinstance(fact, dict):
            raise InputFileError(f"{path}: facts[{index}] must be an object")
    return FactsFile(description, facts)


@dataclass(frozen=True)
class TimelineStep:
    line: int
    description: str | None
    facts: list[dict[str, Any]]
    retract: list[str]
    expected_version: int
    delay: float


_STEP_KEYS = {"description", "delay", "retract", "assert", "expected_version"}


def load_timeline(path: str | os.PathLike[str]) -> list[TimelineStep]:
    """Read and shape-check TIMELINE.jsonl; errors name the file and line, never a value."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise InputFileError(f"{path}: cannot read: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise InputFileError(f"{path}: not UTF-8 text") from error
    steps = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            step = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputFileError(
                f"{where}: invalid JSON at column {error.colno}: {error.msg}"
            ) from error
        if not isinstance(step, dict):
            raise InputFileError(f"{where}: expected an object (one batch per line)")
        unknown = sorted(set(step) - _STEP_KEYS)
        if unknown:
            raise InputFileError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}")
        description = step.get("description")
        if description is not None and not isinstance(description, str):
            raise InputFileError(f'{where}: "description" must be a string')
        facts = step.get("assert", [])
        if not isinstance(facts, list) or not all(isinstance(f, dict) for f in facts):
            raise InputFileError(f'{where}: "assert" must be a list of facts (objects)')
        retract = step.get("retract", [])
        if not isinstance(retract, list) or not all(isinstance(i, str) for i in retract):
            raise InputFileError(f'{where}: "retract" must be a list of fact ids')
        expected = step.get("expected_version", 0)
        if type(expected) is not int or expected < 0:
            raise InputFileError(f'{where}: "expected_version" must be a whole number >= 0')
        delay = step.get("delay", 0)
        if type(delay) not in (int, float) or not 0 <= delay <= 3600:
            raise InputFileError(f'{where}: "delay" must be seconds between 0 and 3600')
        steps.append(TimelineStep(number, description, facts, retract, expected, float(delay)))
    if not steps:
        raise InputFileError(f"{path}: no batches (one JSON object per line)")
    return steps


def _color_wanted(stream: TextIO, forced: bool) -> bool:
    if forced:
        return True
    # https://no-color.org: any non-empty NO_COLOR disables colour by default.
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class _Printer:
    """Human-readable output; kept apart from the transport so it reads as a report."""

    def __init__(self, out: TextIO, color: bool) -> None:
        self.out = out
        self.color = color

    def _style(self, text: str, style: str | None) -> str:
        return f"{style}{text}{_RESET}" if self.color and style else text

    def line(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def wrapped(self, text: str, indent: str = "    ", hanging: str = "") -> None:
        for paragraph in text.splitlines() or [""]:
            self.line(
                textwrap.fill(
                    paragraph, _WIDTH, initial_indent=indent, subsequent_indent=indent + hanging
                )
                or indent.rstrip()
            )

    def header(self, description: str) -> None:
        for line in textwrap.wrap(description, _WIDTH) or [""]:
            self.line(self._style(line, _BOLD))
        self.line()

    def conclusion(self, c: Conclusion) -> None:
        label = c.kind.replace("_", " ")
        urgency = self._style(c.urgency, _URGENCY_STYLE.get(c.urgency))
        self.line(f"[{label}] {urgency}  {c.code}")
        self.line(f"    {self._style(c.title, _BOLD)}")
        self.wrapped(c.detail)
        why = [
            f"rule {c.rule_id} ({c.ruleset})",
            f"facts read: {_joined(c.fact_ids)}",
            f"derived from: {_joined(c.derived_from)}",
            f"citations: {_joined(c.citation_ids)}",
            f"certainty: {c.certainty or '-'}",
        ]
        self.wrapped("why: " + "; ".join(why), hanging="     ")
        if c.source_references:
            self.wrapped("records: " + _joined(c.source_references), hanging="         ")
        self.line()

    def report(self, report: Any) -> None:
        """The mapping report: what each resource fed, or why it was ignored."""
        self.line("FHIR records read:")
        for resource in report.resources:
            outcome = (
                f"-> {_joined(resource.fact_ids)}"
                if resource.status == "USED"
                else f"ignored ({resource.reason})"
            )
            self.line(f"  {resource.reference:<44} {outcome}")
        for conflict in report.conflicts:
            where = f"{conflict.fact_id}.{conflict.field}" if conflict.field else conflict.fact_id
            self.line(
                f"  conflict on {where}: {conflict.resolution} "
                f"(kept {_joined(conflict.kept)}; over {_joined(conflict.overridden)})"
            )
        self.line()

    def summary(self, s: Summary, conclusions: Sequence[Conclusion]) -> None:
        self.line(
            f"{s.conclusion_count} conclusion(s), {s.rules_fired} rule(s) fired, "
            f"knowledge base {s.knowledge_base_version}"
        )
        by_kind: dict[str, list[Conclusion]] = {}
        for c in conclusions:
            by_kind.setdefault(c.kind, []).append(c)
        if not by_kind:
            return
        self.line()
        self.line("By kind:")
        # Kinds this client does not know yet still get printed, after the known ones.
        for kind in [*KIND_ORDER, *sorted(set(by_kind) - set(KIND_ORDER))]:
            if kind not in by_kind:
                continue
            codes = ", ".join(
                self._style(c.code, _URGENCY_STYLE.get(c.urgency)) for c in by_kind[kind]
            )
            self.line(f"  {kind.replace('_', ' ').lower():<22}{codes}")

    def current(self, c: Conclusion) -> None:
        self.line(f"  = current   [{c.kind.replace('_', ' ')}] {c.urgency}  {c.code}")

    def change(self, change: ConclusionChange) -> None:
        c = change.conclusion
        mark = {"ADDED": "+", "UPDATED": "~", "WITHDRAWN": "-"}.get(change.type, "?")
        urgency = self._style(c.urgency, _URGENCY_STYLE.get(c.urgency))
        label = c.kind.replace("_", " ")
        self.line(f"  {mark} {change.type:<9} [{label}] {urgency}  {c.code}")
        self.line(f"      {self._style(c.title, _BOLD) if change.type != 'WITHDRAWN' else c.title}")


def _joined(items: Iterable[str]) -> str:
    return ", ".join(items) or "-"


def _read_file(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise InputFileError(f"{what} {path}: cannot read: {error.strerror or error}") from error


def _token(args: argparse.Namespace) -> str | None:
    """The bearer token: the first non-blank line of --token-file, else $CDS_TOKEN."""
    if args.token_file:
        text = _read_file(args.token_file, "token file").decode("utf-8", errors="replace")
        tokens = [line.strip() for line in text.splitlines() if line.strip()]
        if not tokens:
            raise InputFileError(f"token file {args.token_file}: no token in it")
        return tokens[0]
    return os.environ.get("CDS_TOKEN") or None


def _client(args: argparse.Namespace) -> CdsClient:
    """A client for the command line's target, TLS and token options."""
    if bool(args.tls_cert) != bool(args.tls_key):
        raise InputFileError("--tls-cert and --tls-key go together")
    try:
        return CdsClient(
            args.target,
            timeout=args.timeout,
            tls=args.tls,
            root_certificates=_read_file(args.tls_ca, "CA file") if args.tls_ca else None,
            certificate_chain=_read_file(args.tls_cert, "certificate") if args.tls_cert else None,
            private_key=_read_file(args.tls_key, "private key") if args.tls_key else None,
            token=_token(args),
        )
    except ValueError as error:
        if isinstance(error, InputFileError):
            raise
        raise InputFileError(str(error)) from error


def _evaluate(args: argparse.Namespace, out: TextIO) -> int:
    facts_file = load_facts_file(args.file)
    printer = _Printer(out, _color_wanted(out, args.color))
    with _client(args) as cds:
        try:
            events = cds.evaluate(facts_file.facts)
        except ValueError as error:  # a fact that cannot be put on the wire
            raise InputFileError(f"{args.file}: {error}") from error
        if args.json:
            for event in events:
                kind = "conclusion" if isinstance(event, Conclusion) else "summary"
                print(json.dumps({"event": kind, **dataclasses.asdict(event)}), file=out)
                out.flush()
            return EXIT_OK
        seen: list[Conclusion] = []
        for index, event in enumerate(events):
            # The header waits for the first answer so a failed call leaves no orphan header.
            if index == 0 and facts_file.description:
                printer.header(facts_file.description)
            if isinstance(event, Conclusion):
                seen.append(event)
                printer.conclusion(event)
            else:
                printer.summary(event, seen)
    return EXIT_OK


def _bundle(path: str) -> str:
    text = _read_file(path, "bundle").decode("utf-8", errors="replace")
    try:
        json.loads(text)
    except ValueError as error:
        raise InputFileError(f"{path}: not JSON ({error})") from error
    return text


def _as_of(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputFileError(f"--as-of {text!r}: not an ISO 8601 instant") from None
    if when.utcoffset() is None:
        raise InputFileError(f"--as-of {text!r}: give a zone (Z or +01:00)")
    return when


def _evaluate_fhir(args: argparse.Namespace, out: TextIO) -> int:
    bundle, as_of = _bundle(args.file), _as_of(args.as_of)
    printer = _Printer(out, _color_wanted(out, args.color))
    seen: list[Conclusion] = []
    with _client(args) as cds:
        for event in cds.evaluate_fhir(bundle, as_of):
            if args.json:
                if isinstance(event, Conclusion):
                    record = {"event": "conclusion", **dataclasses.asdict(event)}
                elif isinstance(event, Summary):
                    record = {"event": "summary", **dataclasses.asdict(event)}
                else:
                    record = {"event": "report", **json_format.MessageToDict(event)}
                print(json.dumps(record), file=out, flush=True)
            elif isinstance(event, Conclusion):
                seen.append(event)
                printer.conclusion(event)
            elif isinstance(event, Summary):
                printer.summary(event, seen)
            else:
                printer.report(event)
    return EXIT_OK


def _translate_fhir(args: argparse.Namespace, out: TextIO) -> int:
    bundle, as_of = _bundle(args.file), _as_of(args.as_of)
    with _client(args) as cds:
        answer = cds.translate_fhir(bundle, as_of)
    document = json_format.MessageToDict(answer, preserving_proto_field_name=True)
    print(json.dumps(document, indent=2), file=out)
    return EXIT_OK


def _questionnaire(args: argparse.Namespace, out: TextIO) -> int:
    with _client(args) as cds:
        text = cds.knowledge_base().questionnaire_json
    print(json.dumps(json.loads(text), indent=2), file=out)
    return EXIT_OK


def _explain(args: argparse.Namespace, out: TextIO) -> int:
    facts_file = load_facts_file(args.file)
    with _client(args) as cds:
        try:
            answer = cds.explain(facts_file.facts, args.code)
        except ValueError as error:  # a fact that cannot be put on the wire
            raise InputFileError(f"{args.file}: {error}") from error
    if args.json:
        print(json.dumps(json_format.MessageToDict(answer), indent=2), file=out)
    else:
        _print_explanation(answer, out, "")
    return EXIT_OK


def _grouped(description: str) -> str:
    return f"({description})" if " or " in description or " and " in description else description


def _observed(test: Any) -> str:
    """`Struct` carries numbers as doubles: show 62, not 62.0."""
    values = json_format.MessageToDict(test.observed)
    shown = [
        f"{name} {json.dumps(int(v) if isinstance(v, float) and v.is_integer() else v)}"
        for name, v in values.items()
    ]
    return ", ".join(shown) or "nothing"


def _print_explanation(answer: Any, out: TextIO, indent: str) -> None:
    """Pertinent positives (+) and negatives (-), then the chain, depth first."""
    verdict = "derived" if answer.derived else "NOT derived"
    print(f"{indent}{answer.code}: {verdict}", file=out)
    for rule in answer.rules:
        fired = "fired" if rule.fired else "did not fire"
        print(f"{indent}  rule {rule.rule_id} ({rule.ruleset}) {fired}", file=out)
        many = len(rule.alternatives) > 1
        for number, alternative in enumerate(rule.alternatives, 1):
            inner = indent + ("    " if many else "  ")
            if many:
                state = "holds" if alternative.held else "does not hold"
                print(
                    f"{indent}  alternative {number} of {len(rule.alternatives)} {state}:", file=out
                )
            for condition in alternative.conditions:
                mark = "+" if condition.held else "-"
                print(f"{inner}  {mark} {condition.description}", file=out)
                if condition.held:
                    continue
                if not condition.candidates:
                    print(f"{inner}      no {condition.fact_type} given", file=out)
                for candidate in condition.candidates:
                    if candidate.matched:
                        print(f"{inner}      but found {candidate.id}", file=out)
                        continue
                    for test in candidate.tests:
                        if not test.held:
                            print(
                                f"{inner}      {candidate.id}: not {_grouped(test.description)} "
                                f"(saw {_observed(test)})",
                                file=out,
                            )
    for link in answer.chain:
        _print_explanation(link, out, indent + "    ")


def _session_event(event: ConclusionChange | BatchApplied | BatchRejected) -> dict[str, Any]:
    if isinstance(event, ConclusionChange):
        return {
            "event": "change",
            "type": event.type,
            "version": event.version,
            **dataclasses.asdict(event.conclusion),
        }
    if isinstance(event, BatchApplied):
        return {"event": "applied", **dataclasses.asdict(event)}
    return {"event": "rejected", "reason": event.reason, "violations": event.violations}


def _session(args: argparse.Namespace, out: TextIO) -> int:
    steps = load_timeline(args.file)
    printer = _Printer(out, _color_wanted(out, args.color))
    with _client(args) as cds, cds.session(args.session_id) as s:
        if args.json:
            current = [dataclasses.asdict(c) for c in s.conclusions.values()]
            opened = {
                "event": "opened",
                "session_id": s.session_id,
                "version": s.version,
                "knowledge_base_version": s.knowledge_base_version,
                "previous_knowledge_base_version": s.previous_knowledge_base_version,
                "knowledge_base_changes": [
                    _session_event(change) for change in s.knowledge_base_changes
                ],
            }
            print(json.dumps({**opened, "current": current}), file=out, flush=True)
        else:
            printer.line(
                f"session {s.session_id} at version {s.version} "
                f"(knowledge base {s.knowledge_base_version})"
            )
            if s.previous_knowledge_base_version or s.knowledge_base_changes:
                printer.line(
                    f"knowledge base upgraded from {s.previous_knowledge_base_version or '?'} "
                    f"to {s.knowledge_base_version}: {len(s.knowledge_base_changes)} change(s)"
                )
                for change in s.knowledge_base_changes:
                    printer.change(change)
            for c in s.conclusions.values():
                printer.current(c)
            printer.line()
        for number, step in enumerate(steps, start=1):
            if step.delay and not args.no_delay:
                time.sleep(step.delay)
            try:
                events = s.send(step.facts, step.retract, expected_version=step.expected_version)
            except ValueError as error:  # a fact that cannot be put on the wire
                raise InputFileError(f"{args.file}:{step.line}: {error}") from error
            if not args.json:
                printer.header(f"{number}. {step.description or f'line {step.line}'}")
            for event in events:
                if args.json:
                    print(json.dumps(_session_event(event)), file=out, flush=True)
                elif isinstance(event, ConclusionChange):
                    printer.change(event)
                elif isinstance(event, BatchApplied):
                    printer.line(f"  version {event.version}")
                    printer.line()
                if isinstance(event, BatchRejected):
                    # Reported like a rejected call (exit 2); the session stays as it was.
                    raise CdsError(
                        "BATCH_REJECTED",
                        f"{args.file}:{step.line}: batch rejected, session {s.session_id} "
                        f"unchanged at version {s.version}",
                        event.reason,
                        event.violations,
                    )
        session_id, version, count = s.session_id, s.version, len(s.conclusions)
    if args.delete:
        with _client(args) as cds:
            cds.delete_session(session_id)
    if not args.json:
        printer.line(f"session {session_id} at version {version}: {count} current conclusion(s)")
        printer.line(
            "session deleted" if args.delete else f"resume it with --session-id {session_id}"
        )
    return EXIT_OK


def _watch(args: argparse.Namespace, out: TextIO) -> int:
    printer = _Printer(out, _color_wanted(out, args.color))
    with _client(args) as cds:
        for event in cds.watch(args.session_id):
            if args.json:
                if isinstance(event, SessionSnapshot):
                    record = {
                        "event": "snapshot",
                        "session_id": event.session_id,
                        "version": event.version,
                        "knowledge_base_version": event.knowledge_base_version,
                        "current": [dataclasses.asdict(c) for c in event.conclusions],
                    }
                else:
                    record = _session_event(event)
                print(json.dumps(record), file=out, flush=True)
            elif isinstance(event, SessionSnapshot):
                printer.line(
                    f"session {event.session_id} at version {event.version} "
                    f"(knowledge base {event.knowledge_base_version})"
                )
                for c in event.conclusions:
                    printer.current(c)
                printer.line()
            elif isinstance(event, ConclusionChange):
                printer.change(event)
            else:
                printer.line(f"  version {event.version}")
                printer.line()
            out.flush()
    return EXIT_OK


def _knowledge_base(args: argparse.Namespace, out: TextIO) -> int:
    with _client(args) as cds:
        kb = cds.knowledge_base()
    if args.json:
        document = json_format.MessageToDict(kb, preserving_proto_field_name=True)
        print(json.dumps(document, indent=2), file=out)
        return EXIT_OK
    printer = _Printer(out, color=False)
    printer.line(f"Knowledge base {kb.version}")
    for ruleset in kb.rulesets:
        printer.line()
        printer.line(f"Ruleset {ruleset.name}")
        if ruleset.description:
            printer.wrapped(ruleset.description, indent="  ")
        for rule in ruleset.rules:
            codes = _joined(rule.conclusion_codes)
            printer.line(f"  {rule.id} -> {codes}")
            printer.wrapped(
                f"cites {_joined(rule.citation_ids)}; certainty {rule.certainty or '-'}",
                indent="      ",
            )
    if kb.conclusions:
        printer.line()
        printer.line("Conclusion codes")
        for definition in kb.conclusions:
            kind, urgency = kind_name(definition.kind), urgency_name(definition.urgency)
            printer.line(f"  {definition.code:<46}{kind:<21}{urgency}")
    if kb.fact_schemas:
        printer.line()
        printer.line(f"Fact types: {', '.join(sorted(kb.fact_schemas))}")
    if kb.references:
        printer.line()
        printer.line("References")
        for reference in kb.references:
            printer.wrapped(f"{reference.id}: {reference.citation}", indent="  ", hanging="    ")
    return EXIT_OK


def _stream_output_options(command: argparse.ArgumentParser) -> None:
    """How a command that streams conclusions prints them."""
    command.add_argument("--json", action="store_true", help="one JSON object per line")
    command.add_argument(
        "--color", action="store_true", help="highlight urgency even when not on a terminal"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m client",
        description="Ask the cervicogenic-headache decision-support service.",
        epilog="Exit status: 0 ok, 1 unusable input file, 2 rejected by the server, "
        "3 server unreachable.",
    )
    parser.add_argument(
        "--target", default=DEFAULT_TARGET, help=f"HOST:PORT (default {DEFAULT_TARGET})"
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT,
        help=f"deadline per call in seconds (default {DEFAULT_TIMEOUT:g})",
    )
    security = parser.add_argument_group("transport security")
    security.add_argument("--tls", action="store_true", help="use TLS with the system's CAs")
    security.add_argument("--tls-ca", metavar="CA.pem", help="use TLS, trusting this CA (PEM)")
    security.add_argument("--tls-cert", metavar="CERT.pem", help="client certificate (mutual TLS)")
    security.add_argument("--tls-key", metavar="KEY.pem", help="its private key")
    security.add_argument(
        "--token-file",
        metavar="FILE",
        help="send the bearer token in FILE (default: $CDS_TOKEN, if set)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    evaluate = commands.add_parser("evaluate", help="evaluate the facts in FILE.json")
    evaluate.add_argument("file", metavar="FILE.json")
    _stream_output_options(evaluate)
    evaluate.set_defaults(run=_evaluate)

    session = commands.add_parser(
        "session", help="replay TIMELINE.jsonl in a session, printing changes as they stream"
    )
    session.add_argument("file", metavar="TIMELINE.jsonl")
    session.add_argument("--session-id", default=None, help="resume this session")
    session.add_argument("--no-delay", action="store_true", help="ignore the delays")
    session.add_argument("--delete", action="store_true", help="delete the session at the end")
    _stream_output_options(session)
    session.set_defaults(run=_session)

    watch = commands.add_parser(
        "watch", help="follow a session's conclusions as any writer changes them"
    )
    watch.add_argument("session_id", metavar="SESSION_ID")
    _stream_output_options(watch)
    watch.set_defaults(run=_watch)

    explain = commands.add_parser(
        "explain", help="why (or why not) CODE for the facts in FILE.json"
    )
    explain.add_argument("file", metavar="FILE.json")
    explain.add_argument("code", metavar="CODE", help="a conclusion code, e.g. mimic.pots")
    explain.add_argument("--json", action="store_true", help="the full response as JSON")
    explain.set_defaults(run=_explain)

    fhir = commands.add_parser(
        "evaluate-fhir", help="evaluate a FHIR R4 Bundle: what was read, then the conclusions"
    )
    fhir.add_argument("file", metavar="BUNDLE.json")
    fhir.add_argument("--as-of", help="the instant of the decision, ISO 8601 with a zone")
    _stream_output_options(fhir)
    fhir.set_defaults(run=_evaluate_fhir)

    translate = commands.add_parser(
        "translate-fhir", help="the facts and report read from a FHIR R4 Bundle, as JSON"
    )
    translate.add_argument("file", metavar="BUNDLE.json")
    translate.add_argument("--as-of", help="the instant of the decision, ISO 8601 with a zone")
    translate.set_defaults(run=_translate_fhir)

    form = commands.add_parser("questionnaire", help="print the assessment Questionnaire (FHIR)")
    form.set_defaults(run=_questionnaire)

    kb = commands.add_parser("kb", help="print the knowledge base")
    kb.add_argument("--json", action="store_true", help="the full response as JSON")
    kb.set_defaults(run=_knowledge_base)
    return parser


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number of seconds") from None
    if not value > 0:  # also rejects NaN
        raise argparse.ArgumentTypeError("must be positive: every call needs a deadline")
    return value


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the command line; returns the exit status instead of exiting, for callers."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    args = _parser().parse_args(argv)
    try:
        return args.run(args, out)
    except InputFileError as error:
        print(f"error: {error}", file=err)
        return EXIT_BAD_INPUT
    except CdsUnavailable as error:
        print(f"error: cannot reach the service at {args.target}: {error.message}", file=err)
        return EXIT_UNREACHABLE
    except CdsError as error:
        print(f"error: {error}", file=err)
        return EXIT_REJECTED
    except KeyboardInterrupt:
        return 130  # the shell's convention for SIGINT; the call was cancelled
