"""The cervicogenic-headache knowledge base: facts, rules, references, engine.

Nothing here knows about gRPC: the same knowledge runs under the server, the
scenario runner and the tests.
"""

from kb.rules import GROUPS

# Bump on any change to a rule, a threshold, the fact vocabulary or a citation.
VERSION = "2.0.0"

__all__ = ["GROUPS", "VERSION"]
