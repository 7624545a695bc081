"""CDS Hooks 2.0 in front of the decision-support service: `python -m cds_hooks`.

An EHR discovers two services (`cgh-patient-view`, `cgh-order-select`), calls
one with its prefetched FHIR records, and shows the answer as cards. Each
call is one `EvaluateFhir` over gRPC through the project's client
(`cds_hooks.app`); the cards are built in `cds_hooks.cards`, the EHR's JWT
checked in `cds_hooks.auth`, feedback kept in `cds_hooks.feedback`.
"""
