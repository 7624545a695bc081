"""`python -m kb.mutate` (`make kb-mutate`): do the scenarios notice a broken rule?

Each mutant changes one thing in the engine's compiled definition of one rule
alternative — a threshold one up or down (30 -> 29, 30 -> 31), a comparison
(>= <-> >, <= <-> <, given <-> absent), a connective (and <-> or), one condition
dropped (a test of a pattern, a branch of an or, or a whole pattern such as a
`none(...)`) — then runs every scenario on it. A mutant the scenarios do not
catch "survives": a rule could be wrong that way and nothing would fail.

What is never mutated: the stage marker and the fact-type discriminator `t`,
engine scaffolding whose removal changes no answer by design.

Some mutants cannot change any answer (e.g. POTS's adolescent branch without
its upper age bound: from 20 the adult branch, with its lower threshold, fires
anyway). Each such mutant is listed, with the reason, in
`kb/scenarios/equivalent_mutants.yaml`; a listed mutant that the scenarios do
kill, or no longer exists, makes the run fail so the list cannot go stale.
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Any

import yaml

from kb.conditions import STAGE_ALIAS, describe
from kb.engine import RulesEngine
from kb.facts import Fact, validate_facts
from kb.scenarios import SCENARIO_DIR, Scenario, check, load_scenarios

EQUIVALENT_FILE = SCENARIO_DIR / "equivalent_mutants.yaml"

SWAPS = {"$gte": "$gt", "$gt": "$gte", "$lte": "$lt", "$lt": "$lte", "$ex": "$nex", "$nex": "$ex"}
CONNECTIVES = {"$and": "$or", "$or": "$and"}

Path = tuple[Any, ...]


@dataclass(frozen=True)
class Mutant:
    rule: str  # the durable rule name, e.g. "MIM-02#1"
    path: Path  # where in that rule's definition
    change: str  # plain words
    apply: Callable[[Any], Any]  # returns the replacement for the node at `path`


def _is_discriminator(node: Any) -> bool:
    return isinstance(node, dict) and set(node) == {"t"}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _swap_connective(node: dict[str, Any]) -> dict[str, Any]:
    """and <-> or among the tests; the fact-type discriminator stays a conjunct."""
    ((operator, items),) = node.items()
    kept = [item for item in items if _is_discriminator(item)]
    tests = [item for item in items if not _is_discriminator(item)]
    swapped = {CONNECTIVES[operator]: tests}
    return {"$and": [*kept, swapped]} if kept else swapped


def _mutants_of(rule: str, path: Path, node: Any) -> Iterator[Mutant]:
    if not isinstance(node, dict) or len(node) != 1:
        return
    ((operator, argument),) = node.items()
    if operator in CONNECTIVES:
        if sum(not _is_discriminator(item) for item in argument) > 1:
            yield Mutant(
                rule,
                path,
                f"{operator} -> {CONNECTIVES[operator]} in: {describe(node)}",
                _swap_connective,
            )
        for index, item in enumerate(argument):
            if _is_discriminator(item):
                continue
            yield Mutant(
                rule,
                path,
                f"drop '{describe(item)}' from '{describe(node)}'",
                lambda n, o=operator, i=index: {o: n[o][:i] + n[o][i + 1 :]},
            )
            yield from _mutants_of(rule, (*path, operator, index), item)
        return
    if operator in SWAPS:
        yield Mutant(
            rule,
            path,
            f"{operator} -> {SWAPS[operator]} in: {describe(node)}",
            lambda n, o=operator: {SWAPS[o]: n[o]},
        )
    if operator in ("$gt", "$gte", "$lt", "$lte"):
        ((name, operand),) = argument.items()
        if _number(operand):
            for delta in (-1, 1):
                yield Mutant(
                    rule,
                    path,
                    f"{describe(node)} -> {operand + delta}",
                    lambda n, o=operator, f=name, d=delta: {o: {f: n[o][f] + d}},
                )
        elif isinstance(operand, dict) and "$add" in operand and _number(operand["$add"]["$r"]):
            for delta in (-1, 1):
                yield Mutant(
                    rule,
                    path,
                    f"{describe(node)}: {operand['$add']['$r']} -> {operand['$add']['$r'] + delta}",
                    lambda n, o=operator, f=name, d=delta: {
                        o: {f: {"$add": {**n[o][f]["$add"], "$r": n[o][f]["$add"]["$r"] + d}}}
                    },
                )


def mutants(definition: dict[str, Any]) -> list[Mutant]:
    """Every mutant of the knowledge rules (`ID#n`) of a compiled definition."""
    found: list[Mutant] = []
    for name, rule in definition.items():
        if "#" not in name:
            continue
        patterns = rule["all"]
        for index, entry in enumerate(patterns):
            ((alias, expression),) = entry.items()
            if alias == STAGE_ALIAS:
                continue
            found.append(
                Mutant(
                    name,
                    ("all",),
                    f"drop pattern '{alias}'",
                    lambda n, i=index: n[:i] + n[i + 1 :],
                )
            )
            found.extend(_mutants_of(name, ("all", index, alias), expression))
    # The same change can occur twice in one rule (a sub-expression repeated):
    # number the repeats so that every mutant has a stable name.
    seen: dict[tuple[str, str], int] = {}
    named = []
    for mutant in found:
        count = seen[(mutant.rule, mutant.change)] = seen.get((mutant.rule, mutant.change), 0) + 1
        named.append(mutant if count == 1 else replace(mutant, change=f"{mutant.change} #{count}"))
    return named


def _replace(node: Any, path: Path, apply: Callable[[Any], Any]) -> Any:
    if not path:
        return apply(node)
    head, *rest = path
    copied = copy.copy(node)
    copied[head] = _replace(node[head], tuple(rest), apply)
    return copied


def mutate(definition: dict[str, Any], mutant: Mutant) -> dict[str, Any]:
    mutated = dict(definition)
    mutated[mutant.rule] = _replace(definition[mutant.rule], mutant.path, mutant.apply)
    return mutated


def _killed(engine: RulesEngine, cases: Sequence[tuple[Scenario, list[Fact]]]) -> str | None:
    """The first scenario that fails on this engine, or None."""
    for scenario, facts in cases:
        try:
            conclusions = engine.evaluate(facts).conclusions
        except Exception as error:
            return f"{scenario.name} ({type(error).__name__})"
        if check(scenario, conclusions):
            return scenario.name
    return None


MUTANT_TIMEOUT_SECONDS = 20.0
_CASES: list[tuple[Scenario, list[Fact]]] = []
_MUTANTS: list[Mutant] = []


def _worker(indices: Sequence[int], connection: Connection) -> None:
    """Run mutants in a forked child, announcing each before it runs: a mutant
    can crash or hang the engine, and the parent must know which one did."""
    for index in indices:
        connection.send(("start", index, None))
        mutant = _MUTANTS[index]
        engine = RulesEngine(transform=lambda definition, m=mutant: mutate(definition, m))
        try:
            connection.send(("done", index, _killed(engine, _CASES)))
        finally:
            engine.close()
    connection.close()


def _supervise(indices: list[int], results: dict[int, str | None]) -> None:
    """Run `indices` in child processes; a child that dies or stalls kills the
    mutant it was on (the scenarios would have noticed) and a new child goes on."""
    context = multiprocessing.get_context("fork")
    pending = list(indices)
    while pending:
        receiver, sender = context.Pipe(duplex=False)
        child = context.Process(target=_worker, args=(pending, sender), daemon=True)
        child.start()
        sender.close()
        current = None
        while pending:
            if not receiver.poll(MUTANT_TIMEOUT_SECONDS):
                break
            try:
                event, index, killer = receiver.recv()
            except EOFError:
                break
            if event == "start":
                current = index
            else:
                results[index] = killer
                pending.remove(index)
                current = None
        child.kill()
        child.join()
        if current is not None:
            results[current] = "the engine crashed or hung"
            pending.remove(current)


def run_all(processes: int) -> dict[int, str | None]:
    results: dict[int, str | None] = {}
    shares = [list(range(start, len(_MUTANTS), processes)) for start in range(processes)]
    threads = [threading.Thread(target=_supervise, args=(share, results)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kb.mutate", description=__doc__)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    _CASES[:] = [
        (scenario, validate_facts(list(scenario.facts)))
        for scenario in load_scenarios()
        if not scenario.error
    ]
    baseline = RulesEngine()
    if _killed(baseline, _CASES) is not None:
        print("the scenarios fail on the unmutated rules: run `make kb-check` first")
        return 2
    _MUTANTS[:] = mutants(baseline.definition())
    # Forked children inherit the scenarios and mutants; each builds its own engines.
    results = run_all(max(1, args.processes))
    equivalent = load_equivalent()
    survived = {(m.rule, m.change) for i, m in enumerate(_MUTANTS) if results[i] is None}
    survivors = [m for i, m in enumerate(_MUTANTS) if results[i] is None]
    for mutant in survivors:
        if (mutant.rule, mutant.change) not in equivalent:
            print(f"SURVIVED {mutant.rule}: {mutant.change}")
    stale = sorted(set(equivalent) - survived)
    for rule, change in stale:
        print(f"STALE equivalent_mutants.yaml entry (killed or gone) {rule}: {change}")
    unexplained = [m for m in survivors if (m.rule, m.change) not in equivalent]
    seconds = time.perf_counter() - started
    print(
        f"{len(_MUTANTS)} mutants, {len(_MUTANTS) - len(survivors)} killed, "
        f"{len(survivors) - len(unexplained)} equivalent (listed with reasons), "
        f"{len(unexplained)} survived ({len(_CASES)} scenarios, {seconds:.1f} s)"
    )
    return 1 if unexplained or stale else 0


def load_equivalent() -> dict[tuple[str, str], str]:
    """Reviewed equivalent mutants: (rule, change) -> why no answer can differ."""
    if not EQUIVALENT_FILE.exists():
        return {}
    document = yaml.safe_load(EQUIVALENT_FILE.read_text()) or {}
    return {(entry["rule"], entry["change"]): entry["why"] for entry in document["equivalent"]}


if __name__ == "__main__":
    sys.exit(main())
