"""Typed Python client for the cervicogenic-headache decision-support service.

    from client import CdsClient

    with CdsClient("127.0.0.1:50051", timeout=5.0) as cds:
        for event in cds.evaluate(facts):
            ...  # a Conclusion per derived conclusion, then one Summary

The command line is `python -m client --help`.
"""

from client.api import CdsClient, CdsError, CdsUnavailable, Conclusion, Summary

__all__ = ["CdsClient", "CdsError", "CdsUnavailable", "Conclusion", "Summary"]
