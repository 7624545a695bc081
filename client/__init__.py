"""Typed Python client for the cervicogenic-headache decision-support service.

    from client import CdsClient

    with CdsClient("127.0.0.1:50051", timeout=5.0) as cds:
        for event in cds.evaluate(facts):
            ...  # a Conclusion per derived conclusion, then one Summary

    with CdsClient("127.0.0.1:50051") as cds, cds.session() as session:
        result = session.apply(facts)  # or session.send(facts) to stream the events
        for change in result.changes:
            ...  # ConclusionChange: ADDED / UPDATED / WITHDRAWN, then the new version
        print(session.session_id, session.version)  # resume later: cds.session(session_id)

The command line is `python -m client --help`.
"""

# Session event types (ConclusionChange, BatchApplied, BatchRejected, BatchResult,
# Session) live in client.api; the package surface stays the five names below.
from client.api import CdsClient, CdsError, CdsUnavailable, Conclusion, Summary

__all__ = ["CdsClient", "CdsError", "CdsUnavailable", "Conclusion", "Summary"]
